//! The `stats` families, shared by the text `stats` command and binary STAT.

use crate::server::ServerState;

/// Calls `f(name, value)` for each stat of the group `group` ("" for the general stats).
/// Returns false when the group is unknown.
pub fn for_each_stat(state: &ServerState, group: &str, f: &mut dyn FnMut(&str, &str)) -> bool {
    let _ = (state, group, f);
    false
}

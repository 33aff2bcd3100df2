use super::{Ctx, Step};

pub fn handle(_ctx: &mut Ctx<'_>, _buf: &[u8], _out: &mut Vec<u8>) -> Step {
    Step::Close
}

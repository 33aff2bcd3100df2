//! The `stats` families, shared by the text `stats` command and binary STAT. Names follow
//! memcached's, so existing dashboards and tools read them unchanged.

use std::fmt::Display;
use std::sync::atomic::Ordering;

use crate::model::StatKind;
use crate::state::{ServerState, VERSION};

/// Calls `f(name, value)` for each stat of `group` ("" is the general stats).
/// Returns false when the group is unknown.
pub fn for_each_stat(state: &ServerState, group: &str, f: &mut dyn FnMut(&str, &str)) -> bool {
    let mut put = |name: &str, value: &dyn Display| f(name, &value.to_string());
    let base = state.stats.reset_base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut since_reset = |name: &str, v: u64| v.saturating_sub(base.get(name).copied().unwrap_or(0));
    match group {
        "" => general(state, &mut put, &mut since_reset),
        "settings" => settings(state, &mut put),
        "items" => items(state, &mut put, &mut since_reset),
        "slabs" => slabs(state, &mut put),
        "conns" => conns(state, &mut put),
        _ => return false,
    }
    true
}

/// `stats reset`: counters (totals such as `cmd_get`, `get_hits`, `bytes_read`, `evictions`)
/// start again from 0; levels (`curr_items`, `bytes`, `curr_connections`...) are untouched, as in
/// memcached.
pub fn reset(state: &ServerState) {
    let mut now = std::collections::HashMap::new();
    let mut record = |name: &str, v: u64| {
        now.insert(name.to_string(), v);
        0
    };
    // `stats items` shows some of the same counters, against the general names' base.
    general(state, &mut |_, _| {}, &mut record);
    *state.stats.reset_base.lock().unwrap_or_else(|e| e.into_inner()) = now;
}

type Put<'a> = dyn FnMut(&str, &dyn Display) + 'a;
/// A counter's value as shown: since the last `stats reset` (see [`reset`]).
type Count<'a> = dyn FnMut(&str, u64) -> u64 + 'a;

fn rusage() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

fn general(state: &ServerState, put: &mut Put<'_>, count: &mut Count<'_>) {
    let mut counter = |put: &mut Put<'_>, name: &str, v: u64| put(name, &count(name, v));
    let s = state.engine.stats();
    let clock = state.engine.clock();
    let st = &state.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (user, system) = rusage();
    put("pid", &std::process::id());
    put("uptime", &state.started.elapsed().map(|d| d.as_secs()).unwrap_or(0));
    put("time", &clock.unix_now());
    put("version", &VERSION);
    put("pointer_size", &(usize::BITS));
    put("rusage_user", &format_args!("{user:.6}"));
    put("rusage_system", &format_args!("{system:.6}"));
    put("max_connections", &state.config.server.conn_limit);
    put("curr_connections", &load(&st.curr_connections));
    counter(put, "total_connections", load(&st.total_connections));
    counter(put, "rejected_connections", load(&st.rejected_connections));
    put("connection_structures", &load(&st.curr_connections));
    counter(put, "cmd_get", s.cmd_get);
    counter(put, "cmd_set", s.cmd_set);
    counter(put, "cmd_flush", load(&st.cmd_flush));
    counter(put, "cmd_touch", s.cmd_touch);
    counter(put, "get_hits", s.get_hits);
    counter(put, "get_misses", s.get_misses);
    counter(put, "get_expired", s.get_expired);
    counter(put, "get_flushed", s.get_flushed);
    counter(put, "delete_misses", s.delete_misses);
    counter(put, "delete_hits", s.delete_hits);
    counter(put, "incr_misses", s.incr_misses);
    counter(put, "incr_hits", s.incr_hits);
    counter(put, "decr_misses", s.decr_misses);
    counter(put, "decr_hits", s.decr_hits);
    counter(put, "cas_misses", s.cas_misses);
    counter(put, "cas_hits", s.cas_hits);
    counter(put, "cas_badval", s.cas_badval);
    counter(put, "touch_hits", s.touch_hits);
    counter(put, "touch_misses", s.touch_misses);
    put("auth_cmds", &0);
    counter(put, "auth_errors", load(&st.auth_errors));
    counter(put, "bytes_read", st.bytes_read.get());
    counter(put, "bytes_written", st.bytes_written.get());
    put("limit_maxbytes", &state.config.memory_bytes());
    put("threads", &crate::node::worker_threads(&state.config));
    put("bytes", &s.bytes);
    put("curr_items", &s.curr_items);
    counter(put, "total_items", s.total_items);
    counter(put, "expired_unfetched", s.expired_unfetched);
    counter(put, "evicted_unfetched", s.evicted_unfetched);
    counter(put, "evictions", s.evictions);
    counter(put, "reclaimed", s.reclaimed);
    state.engine.for_each_tier_stat(&mut |name, v, kind| match kind {
        StatKind::Count => counter(put, name, v),
        // A reset leaves levels.
        StatKind::Level => put(name, &v),
    });
}

fn settings(state: &ServerState, put: &mut Put<'_>) {
    let cfg = &state.config;
    put("maxbytes", &cfg.memory_bytes());
    put("maxconns", &cfg.server.conn_limit);
    put("tcpport", &cfg.server.port);
    put("udpport", &0);
    put("inter", &cfg.server.listen);
    put("verbosity", &state.verbosity.load(Ordering::Relaxed));
    put("evictions", &"on");
    put("domain_socket", &cfg.server.unix_socket.as_deref().unwrap_or("NULL"));
    put("chunk_size", &cfg.l1.memory.chunk_size);
    put("num_threads", &cfg.server.threads);
    put("cas_enabled", &"yes");
    put("item_size_max", &cfg.item_size_max());
    put("key_max", &riven_memcache::MAX_KEY_LEN);
    put("max_line", &cfg.limits.max_line);
    put("flush_enabled", &"yes");
    put("tier_mode", &cfg.mode());
    put(
        "l1",
        &cfg.l1
            .memcached
            .endpoint
            .as_ref()
            .map_or("embedded".to_string(), |m| format!("memcached:{m}")),
    );
    put(
        "l2_path",
        &cfg.l2.path.as_ref().map_or("NULL".into(), |p| p.display().to_string()),
    );
    put("l2_max_bytes", &cfg.l2.max_bytes.0);
    put("batch_port", &cfg.server.batch_port.unwrap_or(0));
}

fn items(state: &ServerState, put: &mut Put<'_>, count: &mut Count<'_>) {
    // One class: every item is made of the same chunks.
    let s = state.engine.stats();
    if s.curr_items == 0 {
        return;
    }
    put("items:1:number", &s.curr_items);
    put("items:1:evicted", &count("evictions", s.evictions));
    put(
        "items:1:evicted_unfetched",
        &count("evicted_unfetched", s.evicted_unfetched),
    );
    put(
        "items:1:expired_unfetched",
        &count("expired_unfetched", s.expired_unfetched),
    );
    put("items:1:reclaimed", &count("reclaimed", s.reclaimed));
    put("items:1:outofmemory", &0);
}

fn slabs(state: &ServerState, put: &mut Put<'_>) {
    if let Some(slabs) = state.engine.slabs() {
        return memcached_slabs(slabs, put);
    }
    let s = state.engine.stats();
    put("1:chunk_size", &s.chunk_size);
    put("1:total_chunks", &s.total_chunks);
    put("1:used_chunks", &s.used_chunks);
    put("1:free_chunks", &(s.total_chunks - s.used_chunks));
    put("1:get_hits", &s.get_hits);
    put("1:cmd_set", &s.cmd_set);
    put("1:delete_hits", &s.delete_hits);
    put("1:incr_hits", &s.incr_hits);
    put("1:decr_hits", &s.decr_hits);
    put("1:cas_hits", &s.cas_hits);
    put("1:cas_badval", &s.cas_badval);
    put("1:touch_hits", &s.touch_hits);
    put("active_slabs", &1);
    put("total_malloced", &(s.total_chunks * s.chunk_size));
}

/// Over memcached: memcached's own classes, as the slab balancer last saw them, with the age of
/// each class's oldest item and the node's writes into it.
fn memcached_slabs(slabs: &crate::backend::slabs::Slabs, put: &mut Put<'_>) {
    let view = slabs.view();
    let mut malloced = 0;
    for c in &view {
        let id = c.id;
        let s = &c.stats;
        put(&format!("{id}:chunk_size"), &s.chunk_size);
        put(&format!("{id}:chunks_per_page"), &s.chunks_per_page);
        put(&format!("{id}:total_pages"), &s.total_pages);
        put(&format!("{id}:used_chunks"), &s.used_chunks);
        put(&format!("{id}:free_chunks"), &s.free_chunks);
        put(&format!("{id}:evicted"), &s.evicted);
        put(&format!("{id}:outofmemory"), &s.outofmemory);
        put(&format!("{id}:tail_age_ms"), &c.tail_age.as_millis());
        put(&format!("{id}:node_writes"), &c.writes);
        malloced += s.total_pages * s.chunks_per_page * s.chunk_size;
    }
    put("active_slabs", &view.iter().filter(|c| c.stats.total_pages > 0).count());
    put("total_malloced", &malloced);
    put("slab_pages_moved", &slabs.pages_moved());
    put("slab_writes_waited", &slabs.writes_waited());
}

fn conns(state: &ServerState, put: &mut Put<'_>) {
    let now = state.engine.clock().now();
    for (id, info) in state.conns.snapshot() {
        put(&format!("{id}:addr"), &info.peer_name());
        put(&format!("{id}:listen_addr"), &info.local);
        put(&format!("{id}:state"), &"conn_waiting");
        put(
            &format!("{id}:secs_since_last_cmd"),
            &now.saturating_sub(info.last_cmd.load(Ordering::Relaxed)),
        );
    }
}

//! The `stats` families, shared by the text `stats` command and binary STAT. Names follow
//! memcached's, so existing dashboards and tools read them unchanged.

use std::fmt::Display;
use std::sync::atomic::Ordering;

use crate::server::{ServerState, VERSION};

/// Calls `f(name, value)` for each stat of `group` ("" is the general stats).
/// Returns false when the group is unknown.
pub fn for_each_stat(state: &ServerState, group: &str, f: &mut dyn FnMut(&str, &str)) -> bool {
    let mut put = |name: &str, value: &dyn Display| f(name, &value.to_string());
    match group {
        "" => general(state, &mut put),
        "settings" => settings(state, &mut put),
        "items" => items(state, &mut put),
        "slabs" => slabs(state, &mut put),
        "conns" => conns(state, &mut put),
        _ => return false,
    }
    true
}

type Put<'a> = dyn FnMut(&str, &dyn Display) + 'a;

fn rusage() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

fn general(state: &ServerState, put: &mut Put<'_>) {
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
    put("max_connections", &state.settings.max_connections);
    put("curr_connections", &load(&st.curr_connections));
    put("total_connections", &load(&st.total_connections));
    put("rejected_connections", &load(&st.rejected_connections));
    put("connection_structures", &load(&st.curr_connections));
    put("cmd_get", &s.cmd_get);
    put("cmd_set", &s.cmd_set);
    put("cmd_flush", &load(&st.cmd_flush));
    put("cmd_touch", &s.cmd_touch);
    put("get_hits", &s.get_hits);
    put("get_misses", &s.get_misses);
    put("get_expired", &s.get_expired);
    put("get_flushed", &s.get_flushed);
    put("delete_misses", &s.delete_misses);
    put("delete_hits", &s.delete_hits);
    put("incr_misses", &s.incr_misses);
    put("incr_hits", &s.incr_hits);
    put("decr_misses", &s.decr_misses);
    put("decr_hits", &s.decr_hits);
    put("cas_misses", &s.cas_misses);
    put("cas_hits", &s.cas_hits);
    put("cas_badval", &s.cas_badval);
    put("touch_hits", &s.touch_hits);
    put("touch_misses", &s.touch_misses);
    put("auth_cmds", &0);
    put("auth_errors", &load(&st.auth_errors));
    put("bytes_read", &st.bytes_read.get());
    put("bytes_written", &st.bytes_written.get());
    put("limit_maxbytes", &state.settings.memory_bytes);
    put("threads", &crate::server::worker_threads(&state.settings));
    put("bytes", &s.bytes);
    put("curr_items", &s.curr_items);
    put("total_items", &s.total_items);
    put("expired_unfetched", &s.expired_unfetched);
    put("evicted_unfetched", &s.evicted_unfetched);
    put("evictions", &s.evictions);
    put("reclaimed", &s.reclaimed);
    state.engine.for_each_tier_stat(&mut |name, v| put(name, &v));
}

fn settings(state: &ServerState, put: &mut Put<'_>) {
    let cfg = &state.settings;
    put("maxbytes", &cfg.memory_bytes);
    put("maxconns", &cfg.max_connections);
    put("tcpport", &cfg.port);
    put("udpport", &0);
    put("inter", &cfg.listen);
    put("verbosity", &state.verbosity.load(Ordering::Relaxed));
    put("evictions", &"on");
    put("domain_socket", &cfg.unix_socket.as_deref().unwrap_or("NULL"));
    put("chunk_size", &cfg.chunk_size);
    put("num_threads", &cfg.threads);
    put("cas_enabled", &"yes");
    put("item_size_max", &cfg.item_size_max);
    put("key_max", &riven_proto::MAX_KEY_LEN);
    put("max_line", &cfg.max_line);
    put("flush_enabled", &"yes");
    put("tier_mode", &cfg.mode());
    put(
        "l1",
        &cfg.l1_memcached
            .as_ref()
            .map_or("embedded".to_string(), |m| format!("memcached:{m}")),
    );
    put(
        "l2_path",
        &cfg.l2_path.as_ref().map_or("NULL".into(), |p| p.display().to_string()),
    );
    put("l2_max_bytes", &cfg.l2_max_bytes);
    put("batch_port", &cfg.batch_port.unwrap_or(0));
}

fn items(state: &ServerState, put: &mut Put<'_>) {
    // One class: every item is made of the same chunks.
    let s = state.engine.stats();
    if s.curr_items == 0 {
        return;
    }
    put("items:1:number", &s.curr_items);
    put("items:1:evicted", &s.evictions);
    put("items:1:evicted_unfetched", &s.evicted_unfetched);
    put("items:1:expired_unfetched", &s.expired_unfetched);
    put("items:1:reclaimed", &s.reclaimed);
    put("items:1:outofmemory", &0);
}

fn slabs(state: &ServerState, put: &mut Put<'_>) {
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

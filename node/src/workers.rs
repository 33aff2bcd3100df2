//! Worker threads, one single-threaded runtime each: memcached's threading model.
//!
//! Each accepted connection belongs to one worker for its whole life, and each worker has its own
//! memcached links (see `backend::links`). A connection's task, the link it uses and the link's
//! reader and writer therefore all run on one thread: handing a request to the link and its
//! reply back to the connection is a plain wake-up on the same thread, with no cross-thread
//! signal, no work stealing and no lock that another core holds, which cuts the node's CPU per
//! request over memcached (BENCHMARKS.md, "Design measurements").

use std::cell::Cell;
use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker the calling thread is, if it is one.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// The running workers. Dropping it stops them (their tasks are dropped) and joins their threads.
pub struct Workers {
    handles: Vec<Handle>,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` workers (at least one), each a thread running its own runtime.
    pub fn start(n: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("riven-worker-{i}"))
                .spawn(move || {
                    WORKER.with(|s| s.set(Some(i)));
                    rt.block_on(stop.cancelled());
                })?;
            threads.push(thread);
        }
        Ok(Workers { handles, stop, threads })
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_knows_its_index() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(current(), None, "the test thread is no worker");
        for (i, handle) in workers.handles().iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            handle.spawn(async move { tx.send(current()).unwrap() });
            assert_eq!(rx.recv().unwrap(), Some(i));
        }
        drop(workers);
    }
}

//! Decoding: reading, authenticating and decompressing the archive's blobs on several
//! threads and handing them to the header parser in order.
//!
//! Invariant guarded here (**bounded**): at most [`AHEAD`] decoded blobs wait for the
//! parser; the first error stops every decoder.

use super::*;

/// Reads, authenticates and decompresses `ids` on `workers` threads and hands them to
/// `sink` in order, at most [`AHEAD`] past the one `sink` waits for; the first error
/// (the sink's or a read's) stops the workers and is returned.
pub(super) fn decode_in_order(
    reader: &SharedReader<'_>,
    ids: &[Id],
    workers: usize,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<()>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let delivered = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Workers wait here for the sink to catch up (no spinning).
    let gate = (Mutex::new(()), std::sync::Condvar::new());
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, coffer_repository::Result<Vec<u8>>)>();
        for _ in 0..workers.max(1) {
            let (tx, next, delivered, stop, gate) = (tx.clone(), &next, &delivered, &stop, &gate);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    {
                        let mut g = gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        while i >= delivered.load(Ordering::Acquire) + AHEAD && !stop.load(Ordering::Acquire) {
                            g = gate.1.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                    }
                    if stop.load(Ordering::Acquire) || tx.send((i, reader.read(id))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        let res = (|| {
            for (i, data) in &rx {
                pending.insert(i, data);
                while let Some(data) = pending.remove(&want) {
                    sink(data?)?;
                    want += 1;
                    let _g = gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    delivered.store(want, Ordering::Release);
                    gate.1.notify_all();
                }
            }
            if want == ids.len() {
                Ok(())
            } else {
                Err(TarError::Io {
                    context: format!("a decoder thread stopped at blob {want} of {}", ids.len()),
                    source: std::io::Error::other("decoder ended early"),
                })
            }
        })();
        if res.is_err() {
            let _g = gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            stop.store(true, Ordering::Release);
            gate.1.notify_all();
        }
        drop(rx);
        res
    })
}

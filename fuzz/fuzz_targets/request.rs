//! Every request, as a service receives it: a stream of frames, each decoded as a `Request`
//! (which must encode back to the same request), then run through what the service checks and
//! does with it where that needs no socket: a provider's data requests against a real in-memory
//! `Store` (hosting, promotion, fencing, installs, writes and reads of selections, publishes),
//! and a manager's checks of names, specs and listing patterns. No panic, no allocation beyond
//! the provider's capacity.

#![no_main]

use std::io::Cursor;

use juxmem::element::ElemType;
use juxmem::plan::stream::{pack_to, unpack_from};
use juxmem::service::coherence::Versions;
use juxmem::service::protocol::{check_name, name_matches, Request};
use juxmem::service::selection::{announced_write_spans, read_spans};
use juxmem::service::store::{Data, Store};
use juxmem::transport::tcp::{decode, read_frame};
use juxmem::with_elem_size;
use libfuzzer_sys::fuzz_target;

/// The provider's capacity: every block it hosts fits in it.
const CAPACITY: u64 = 1 << 20;

const NAMES: [&str; 4] = ["forecast/day1/t2m", "forecast/day2/t2m", "a", "ocean/sst"];

/// The element sizes `with_elem_size!` moves (anything else is `unreachable!` there).
fn check_size(elem: ElemType) {
    assert!(matches!(elem.size(), 1 | 2 | 4 | 8), "element size");
}

fn apply(store: &Store, req: Request) {
    match req {
        // ---- manager: the checks before anything is placed or looked up
        Request::Create { spec, homes } => {
            let _ = check_name(&spec.name);
            let _ = Versions::new(spec.retention);
            check_size(spec.elem);
            let _ = homes.len() as u64 == spec.layout.nprocs();
        }
        Request::Lookup { name, .. } => {
            let _ = check_name(&name);
        }
        Request::List { pattern, .. } | Request::Namespaces { pattern, .. } => {
            for n in NAMES {
                let _ = name_matches(&pattern, n);
            }
        }
        Request::CreateNamespace { name } | Request::DestroyNamespace { name } => {
            let _ = check_name(&name);
        }
        // ---- provider: the data path, on a real store
        Request::Drop { array } => store.drop_array(array),
        Request::Host { meta, block } => {
            check_size(meta.spec.elem);
            let _ = store.host(&meta, block);
        }
        Request::Restore { meta, block, .. } => {
            let _ = store.host(&meta, block);
        }
        Request::Promote { array, block, term } => {
            let _ = store.promote(array, block, term);
        }
        Request::Fence { array, block, term } => {
            let _ = store.fence(array, block, term);
        }
        Request::Install {
            array,
            block,
            term,
            stamp,
            keep,
            bytes,
        } => {
            // As the provider: sized only for a block held here.
            let expected = store
                .meta_of_held(array, block)
                .and_then(|m| m.block_bytes(u64::from(block)));
            if let Ok(n) = expected {
                if n == bytes {
                    let data = Data::zeroed(bytes as usize).expect("a held block fits");
                    let _ = store.install(array, block, term, stamp, &keep, data);
                }
            }
        }
        Request::Write {
            array,
            block,
            term,
            epoch,
            base,
            selection,
            bytes,
        } => {
            let Ok(meta) = store.meta_of_held(array, block) else {
                return;
            };
            let size = meta.spec.elem.size();
            // The provider's own admission of the announced size.
            let Ok(spans) = announced_write_spans(&meta, block, &selection, bytes) else {
                return;
            };
            let Ok(working) = store.working(array, block, term, epoch, base, false) else {
                return;
            };
            let mut w = working.lock().unwrap();
            if w.check_not_lent("writing").is_err() {
                return;
            }
            let wire = vec![0u8; bytes as usize];
            let mut stream = &wire[..];
            with_elem_size!(size, T => unpack_from::<T, _>(&spans, &mut stream, w.data.typed_mut::<T>()))
                .expect("write spans inside the working copy");
        }
        Request::Publish {
            array,
            block,
            term,
            epoch,
            version,
            keep,
            ..
        } => {
            let _ = store.publish(array, block, term, epoch, version, &keep);
        }
        Request::Read {
            array,
            block,
            stamp,
            working,
            selection,
        } => {
            let Ok(meta) = store.meta_of_held(array, block) else {
                return;
            };
            let size = meta.spec.elem.size();
            let Ok(spans) = read_spans(&meta.spec.layout, u64::from(block), &selection) else {
                return;
            };
            let mut wire = Vec::new();
            let w = match working {
                Some(e) => match store.working_if_any(array, block, e) {
                    Ok(w) => w,
                    Err(_) => return,
                },
                None => None,
            };
            match w {
                Some(w) => {
                    let w = w.lock().unwrap();
                    with_elem_size!(size, T => pack_to::<T, _>(&spans, w.data.typed::<T>(), &mut wire))
                        .expect("read spans inside the working copy");
                }
                None => {
                    let Ok(snap) = store.snapshot(array, block, stamp) else {
                        return;
                    };
                    with_elem_size!(size, T => pack_to::<T, _>(&spans, snap.typed::<T>(), &mut wire))
                        .expect("read spans inside the snapshot");
                }
            }
        }
        _ => {}
    }
    assert!(
        store.used() <= store.capacity(),
        "the provider went over its capacity"
    );
}

fuzz_target!(|data: &[u8]| {
    let store = Store::new("fuzz/provider-0", CAPACITY);
    let mut cur = Cursor::new(data);
    while let Ok(frame) = read_frame(&mut cur, 64 << 10) {
        let Ok(req) = decode::<Request>(&frame) else {
            continue;
        };
        let again = postcard::to_stdvec(&req).expect("a decoded request encodes");
        assert_eq!(decode::<Request>(&again).expect("re-decodes"), req);
        apply(&store, req);
    }
});

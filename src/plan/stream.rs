//! Packing to and unpacking from byte streams (sockets, files) along a list of spans, without
//! building the whole message in memory: small runs go through a cache-sized buffer, large
//! contiguous runs are written from or read into the array directly.

use std::io::{self, Read, Write};

use crate::element::{as_bytes, as_bytes_mut, Element};
use crate::plan::{Packed, Span};

/// Buffer size for small runs (bytes); runs at least this large bypass the buffer.
const CHUNK_BYTES: usize = 256 << 10;

/// Elements the spans move.
pub fn span_elements(spans: &[Span]) -> u64 {
    spans.iter().map(Span::elements).sum()
}

fn bounds(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("span outside the {what} buffer"),
    )
}

/// One side of a span: `count` runs of `len` elements, `stride` apart, from `base`.
#[derive(Clone, Copy)]
struct Side {
    base: usize,
    len: usize,
    count: usize,
    stride: usize,
}

impl Side {
    fn of(s: &Span, src_side: bool) -> Side {
        let (base, stride) = if src_side {
            (s.src, s.src_stride)
        } else {
            (s.dst, s.dst_stride)
        };
        let (len, count) = (s.len as usize, s.count as usize);
        if count == 1 || stride == s.len {
            // Contiguous: one run.
            Side {
                base: base as usize,
                len: len * count,
                count: 1,
                stride: 0,
            }
        } else {
            Side {
                base: base as usize,
                len,
                count,
                stride: stride as usize,
            }
        }
    }

    /// One past the last element touched, checked against `limit`.
    fn check(&self, limit: usize, what: &str) -> io::Result<()> {
        let end = (self.count.saturating_sub(1))
            .checked_mul(self.stride)
            .and_then(|x| x.checked_add(self.base))
            .and_then(|x| x.checked_add(self.len));
        match end {
            Some(e) if e <= limit => Ok(()),
            _ => Err(bounds(what)),
        }
    }
}

/// Writes the elements the spans select from `src` (their `src` offsets), in span order.
/// Runs of at least `cap` elements are written straight from `src`; smaller ones, strided
/// single elements included, are gathered into a cache-sized buffer in tight loops.
pub fn pack_to<T: Element, W: Write>(spans: &[Span], src: &[T], w: &mut W) -> io::Result<()> {
    let cap = (CHUNK_BYTES / std::mem::size_of::<T>()).max(1);
    let mut buf: Vec<T> = Vec::with_capacity(cap);
    for s in spans {
        let side = Side::of(s, true);
        side.check(src.len(), "source")?;
        let Side {
            base,
            len,
            count,
            stride,
        } = side;
        if len >= cap {
            // Large runs: straight from the array.
            if !buf.is_empty() {
                w.write_all(as_bytes(&buf))?;
                buf.clear();
            }
            for i in 0..count {
                let a = base + i * stride;
                w.write_all(as_bytes(&src[a..a + len]))?;
            }
            continue;
        }
        let mut i = 0;
        while i < count {
            let room = (cap - buf.len()) / len;
            if room == 0 {
                w.write_all(as_bytes(&buf))?;
                buf.clear();
                continue;
            }
            let k = room.min(count - i);
            if len == 1 {
                buf.extend((i..i + k).map(|j| src[base + j * stride]));
            } else {
                for j in i..i + k {
                    let a = base + j * stride;
                    buf.extend_from_slice(&src[a..a + len]);
                }
            }
            i += k;
        }
    }
    if !buf.is_empty() {
        w.write_all(as_bytes(&buf))?;
    }
    Ok(())
}

/// Reads exactly the elements the spans select and stores them at their `dst` offsets of
/// `dst`, in span order. Never reads past the last element.
pub fn unpack_from<T: Element, R: Read>(
    spans: &[Span],
    r: &mut R,
    dst: &mut [T],
) -> io::Result<()> {
    // SAFETY: `dst` is borrowed exclusively for the whole call.
    unsafe { unpack_from_ptr(spans, r, dst.as_mut_ptr(), dst.len()) }
}

/// [`unpack_from`] into a buffer given by pointer, so several threads can fill disjoint parts
/// of one buffer: elements are written through the pointer (large runs through a slice
/// covering only that run), never through a slice of the whole buffer.
///
/// # Safety
/// `dst` must be valid for writes of `len` elements, and no other thread may access the
/// elements the spans select while this runs.
pub unsafe fn unpack_from_ptr<T: Element, R: Read>(
    spans: &[Span],
    r: &mut R,
    dst: *mut T,
    len: usize,
) -> io::Result<()> {
    let cap = (CHUNK_BYTES / std::mem::size_of::<T>()).max(1);
    let total = span_elements(spans) as usize;
    let mut unread = total; // elements not yet read from the stream
    let mut buf: Vec<T> = vec![T::default(); cap.min(total)];
    let (mut pos, mut filled) = (0usize, 0usize); // buffered elements: buf[pos..filled]
    for s in spans {
        let side = Side::of(s, false);
        side.check(len, "destination")?;
        let Side {
            base,
            len: n,
            count,
            stride,
        } = side;
        let mut i = 0;
        while i < count {
            if n == 1 {
                // Single strided elements: whole batches from the buffer in a tight loop.
                if pos == filled {
                    let k = cap.min(unread);
                    r.read_exact(as_bytes_mut(&mut buf[..k]))?;
                    unread -= k;
                    (pos, filled) = (0, k);
                }
                let k = (filled - pos).min(count - i);
                for (j, v) in buf[pos..pos + k].iter().enumerate() {
                    // SAFETY: in bounds (checked); exclusive per the contract.
                    unsafe { dst.add(base + (i + j) * stride).write(*v) };
                }
                pos += k;
                i += k;
                continue;
            }
            let b = base + i * stride;
            i += 1;
            let mut done = 0;
            while done < n {
                if pos == filled {
                    if n - done >= cap {
                        // Large remainder of a run: straight into the array.
                        // SAFETY: in bounds (checked); exclusive per the contract.
                        let run =
                            unsafe { std::slice::from_raw_parts_mut(dst.add(b + done), n - done) };
                        r.read_exact(as_bytes_mut(run))?;
                        unread -= n - done;
                        break;
                    }
                    let k = cap.min(unread);
                    r.read_exact(as_bytes_mut(&mut buf[..k]))?;
                    unread -= k;
                    (pos, filled) = (0, k);
                }
                let take = (filled - pos).min(n - done);
                if take == 1 {
                    // SAFETY: in bounds (checked); exclusive per the contract.
                    unsafe { dst.add(b + done).write(buf[pos]) };
                } else {
                    // SAFETY: as above.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            buf.as_ptr().add(pos),
                            dst.add(b + done),
                            take,
                        )
                    };
                }
                pos += take;
                done += take;
            }
        }
    }
    Ok(())
}

/// Copies the elements the spans select from `src` (src side) to `dst` (dst side).
///
/// # Safety
/// As for [`copy_span_to_ptr`].
pub unsafe fn copy_to_ptr<T: Copy>(
    spans: &[Span],
    src: &[T],
    dst: *mut T,
    len: usize,
) -> io::Result<()> {
    spans
        .iter()
        .try_for_each(|s| copy_span_to_ptr(s, src, dst, len))
}

/// Copies the elements one span selects from `src` (src side) to `dst` (dst side): one copy
/// if the span is contiguous on both sides, a tight loop for single strided elements, else one
/// copy per run. Writes go through the pointer, through slices covering only their run.
///
/// # Safety
/// `dst` must be valid for writes of `len` elements, and no other thread may access the
/// elements the span selects while this runs.
pub unsafe fn copy_span_to_ptr<T: Copy>(
    s: &Span,
    src: &[T],
    dst: *mut T,
    len: usize,
) -> io::Result<()> {
    if s.count == 0 || s.len == 0 {
        return Ok(());
    }
    // One past the last element touched on each side.
    let end = |base: u64, stride: u64| {
        (s.count - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(base))
            .and_then(|x| x.checked_add(s.len))
            .map_or(u64::MAX, |e| e)
    };
    if end(s.src, s.src_stride) > src.len() as u64 {
        return Err(bounds("source"));
    }
    if end(s.dst, s.dst_stride) > len as u64 {
        return Err(bounds("destination"));
    }
    let (n, count) = (s.len as usize, s.count as usize);
    let (a, sa, b, sb) = (
        s.src as usize,
        s.src_stride as usize,
        s.dst as usize,
        s.dst_stride as usize,
    );
    // SAFETY (all branches): every element touched is in bounds (checked above) and the
    // destination's are exclusive per the contract.
    let (from, to) = unsafe { (src.as_ptr().add(a), dst.add(b)) };
    if count == 1 || (sa == n && sb == n) {
        // Contiguous on both sides: one copy.
        unsafe { std::ptr::copy_nonoverlapping(from, to, n * count) };
    } else if n == 1 {
        // Single elements: tight loops, the contiguous side (if any) made explicit.
        unsafe {
            if sb == 1 {
                for i in 0..count {
                    to.add(i).write(from.add(i * sa).read());
                }
            } else if sa == 1 {
                for i in 0..count {
                    to.add(i * sb).write(from.add(i).read());
                }
            } else {
                for i in 0..count {
                    to.add(i * sb).write(from.add(i * sa).read());
                }
            }
        }
    } else {
        for i in 0..count {
            unsafe { std::ptr::copy_nonoverlapping(from.add(i * sa), to.add(i * sb), n) };
        }
    }
    Ok(())
}

/// Packs the elements the spans select from `src` into `out`: consecutive, in span order (the
/// layout of a message).
///
/// # Safety
/// `out` must be valid for writes of `out_len` elements, and nothing else may access them
/// while this runs.
pub unsafe fn pack_to_ptr<T: Copy>(
    spans: &[Span],
    src: &[T],
    out: *mut T,
    out_len: usize,
) -> io::Result<()> {
    let mut pos = 0;
    for s in spans {
        // SAFETY: per this function's contract.
        unsafe { copy_span_to_ptr(&s.packed_at(Packed::Dst, pos), src, out, out_len)? };
        pos += s.elements();
    }
    Ok(())
}

/// Unpacks a message laid out by [`pack_to_ptr`] (the same spans) into `dst`.
///
/// # Safety
/// As for [`copy_span_to_ptr`], for every span.
pub unsafe fn unpack_to_ptr<T: Copy>(
    spans: &[Span],
    data: &[T],
    dst: *mut T,
    len: usize,
) -> io::Result<()> {
    let mut pos = 0;
    for s in spans {
        // SAFETY: per this function's contract.
        unsafe { copy_span_to_ptr(&s.packed_at(Packed::Src, pos), data, dst, len)? };
        pos += s.elements();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Dist, Layout};
    use crate::plan::Plan;

    #[test]
    fn stream_round_trip_matches_in_memory_copy() {
        let n = 200_000u64;
        for (sd, dd) in [
            (Dist::Block, Dist::Cyclic),
            (Dist::Cyclic, Dist::Block),
            (Dist::BlockCyclic(5), Dist::BlockCyclic(70_000)),
        ] {
            let s = Layout::one_d(n, sd, 3).unwrap();
            let d = Layout::one_d(n, dd, 2).unwrap();
            let plan = Plan::new(&s, &d).unwrap();
            for p in 0..3 {
                let src: Vec<u64> = (0..s.local_len(p).unwrap()).map(|i| i * 3 + p).collect();
                for q in 0..2 {
                    let spans = plan.spans(p, q).unwrap();
                    let mut wire = Vec::new();
                    pack_to(&spans, &src, &mut wire).unwrap();
                    assert_eq!(wire.len() as u64, plan.elements(p, q).unwrap() * 8);
                    let mut got = vec![0u64; d.local_len(q).unwrap() as usize];
                    let mut want = got.clone();
                    // Trailing bytes after the message must stay unread.
                    wire.extend_from_slice(b"NEXT");
                    let mut cursor = std::io::Cursor::new(wire);
                    unpack_from(&spans, &mut cursor, &mut got).unwrap();
                    let mut rest = Vec::new();
                    cursor.read_to_end(&mut rest).unwrap();
                    assert_eq!(rest, b"NEXT");
                    plan.copy(p, q, &src, &mut want).unwrap();
                    assert_eq!(got, want);
                }
            }
        }
    }
}

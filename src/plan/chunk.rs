//! Cutting a transfer into chunks: consecutive ranges of its packed stream (the elements in
//! span order), each with the spans that select it. Pure: both sides of a transfer cut the same
//! spans the same way, so a chunk is one message and no boundaries travel.
//!
//! Executors use chunks to pipeline a large transfer through small, reused buffers (packed
//! while earlier chunks are in flight, so the buffers stay in cache), and to send or receive a
//! chunk straight from or into the array when its elements are contiguous there.

use std::ops::Range;

use crate::plan::Span;

/// One chunk: elements `start..start + len` of the packed stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Position of the chunk's first element in the packed stream.
    pub start: u64,
    /// Elements in the chunk.
    pub len: u64,
    /// The chunk's spans: a range of [`Chunked::spans`].
    pub spans: Range<usize>,
    /// If the chunk's source elements are one contiguous range, its first local offset.
    pub src_contiguous: Option<u64>,
    /// If the chunk's destination elements are one contiguous range, its first local offset.
    pub dst_contiguous: Option<u64>,
}

/// A transfer cut into chunks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunked {
    /// Every chunk's spans, chunk after chunk (spans are split where a chunk ends).
    pub spans: Vec<Span>,
    /// The chunks, in stream order.
    pub chunks: Vec<Chunk>,
}

impl Chunked {
    /// Cuts the transfer selected by `spans` (in canonical order) into chunks of `size`
    /// elements (the last one shorter). A transfer contiguous on both sides stays one chunk,
    /// whatever its length: it needs no buffer, so cutting it would only add messages.
    pub fn new(spans: &[Span], size: u64) -> Chunked {
        let spans = &coalesce(spans);
        let size = size.max(1);
        let total: u64 = spans.iter().map(Span::elements).sum();
        let mut out = Chunked::default();
        if total == 0 {
            return out;
        }
        let whole = Chunk {
            start: 0,
            len: total,
            spans: 0..spans.len(),
            src_contiguous: contiguous(spans, |s| (s.src, s.src_stride)),
            dst_contiguous: contiguous(spans, |s| (s.dst, s.dst_stride)),
        };
        if total <= size || (whole.src_contiguous.is_some() && whole.dst_contiguous.is_some()) {
            out.spans = spans.iter().copied().filter(|s| s.elements() > 0).collect();
            out.chunks.push(Chunk {
                spans: 0..out.spans.len(),
                ..whole
            });
            return out;
        }
        let mut start = 0u64; // stream position of the chunk being built
        let mut fill = 0u64; // its elements so far
        let mut first = 0usize; // its first span in `out.spans`
        for s in spans.iter().filter(|s| s.elements() > 0) {
            let mut done = 0u64; // elements of `s` already placed
            while done < s.elements() {
                let take = (size - fill).min(s.elements() - done);
                split(s, done, done + take, &mut out.spans);
                done += take;
                fill += take;
                if fill == size {
                    out.close(start, size, first);
                    (start, fill, first) = (start + size, 0, out.spans.len());
                }
            }
        }
        if fill > 0 {
            out.close(start, fill, first);
        }
        out
    }

    fn close(&mut self, start: u64, len: u64, first: usize) {
        let spans = &self.spans[first..];
        self.chunks.push(Chunk {
            start,
            len,
            spans: first..self.spans.len(),
            src_contiguous: contiguous(spans, |s| (s.src, s.src_stride)),
            dst_contiguous: contiguous(spans, |s| (s.dst, s.dst_stride)),
        });
    }

    /// The spans of chunk `i`.
    pub fn chunk_spans(&self, i: usize) -> &[Span] {
        &self.spans[self.chunks[i].spans.clone()]
    }

    /// Elements in all chunks.
    pub fn elements(&self) -> u64 {
        self.chunks.iter().map(|c| c.len).sum()
    }

    /// Largest chunk that is not contiguous on the given side (needs a buffer there), if any.
    pub fn largest_buffered(&self, side: impl Fn(&Chunk) -> Option<u64>) -> Option<u64> {
        self.chunks
            .iter()
            .filter(|c| side(c).is_none())
            .map(|c| c.len)
            .max()
    }
}

/// The same element pairs in the same order, in as few spans as consecutive spans allow: runs
/// of equal length that continue one stride on both sides become one span. n-D plans give a
/// span per run pattern of one period (say 2 runs of 16 per row for block-cyclic(64) ->
/// block-cyclic(16) on 2); merged, a row is one span, so copy loops run long instead of paying
/// a span's set-up every few elements.
pub fn coalesce(spans: &[Span]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans.iter().filter(|s| s.elements() > 0) {
        if let Some(a) = out.last_mut() {
            if let Some(m) = merge(a, s) {
                *a = m;
                continue;
            }
        }
        out.push(*s);
    }
    out
}

/// `a` followed by `b` as one span, if `b`'s runs continue `a`'s.
fn merge(a: &Span, b: &Span) -> Option<Span> {
    if a.count == 1 && b.count == 1 && b.src == a.src + a.len && b.dst == a.dst + a.len {
        // One run continuing another on both sides: a longer run.
        return Some(Span {
            len: a.len + b.len,
            ..*a
        });
    }
    if a.len != b.len {
        return None;
    }
    let (ss, ds) = if a.count > 1 {
        (a.src_stride, a.dst_stride)
    } else {
        (b.src.checked_sub(a.src)?, b.dst.checked_sub(a.dst)?)
    };
    // Runs must not overlap on either side (a zero or short stride would).
    if ss < a.len || ds < a.len {
        return None;
    }
    let continues = b.src == a.src + a.count * ss
        && b.dst == a.dst + a.count * ds
        && (b.count == 1 || (b.src_stride, b.dst_stride) == (ss, ds));
    continues.then_some(Span {
        count: a.count + b.count,
        src_stride: ss,
        dst_stride: ds,
        ..*a
    })
}

/// Appends the part of `s` at its stream positions `a..b` (within `s`), as up to three spans:
/// the end of a run, whole runs, the start of a run.
fn split(s: &Span, a: u64, b: u64, out: &mut Vec<Span>) {
    if a == 0 && b == s.elements() {
        out.push(*s);
        return;
    }
    let at = |run: u64, off: u64, len: u64, count: u64| Span {
        src: s.src + run * s.src_stride + off,
        dst: s.dst + run * s.dst_stride + off,
        len,
        count,
        src_stride: if count > 1 { s.src_stride } else { 0 },
        dst_stride: if count > 1 { s.dst_stride } else { 0 },
    };
    let (mut run, off) = (a / s.len, a % s.len);
    let mut pos = a;
    if off != 0 {
        let n = (s.len - off).min(b - a);
        out.push(at(run, off, n, 1));
        pos += n;
        run += 1;
    }
    let whole = (b - pos) / s.len;
    if whole > 0 {
        out.push(at(run, 0, s.len, whole));
        pos += whole * s.len;
        run += whole;
    }
    if pos < b {
        out.push(at(run, 0, b - pos, 1));
    }
}

/// The first offset of one side if the spans select one contiguous range there.
fn contiguous(spans: &[Span], side: impl Fn(&Span) -> (u64, u64)) -> Option<u64> {
    let mut range: Option<(u64, u64)> = None;
    for s in spans.iter().filter(|s| s.elements() > 0) {
        let (start, stride) = side(s);
        if s.count > 1 && stride != s.len {
            return None;
        }
        let end = start + s.len * s.count;
        range = match range {
            None => Some((start, end)),
            Some((a, b)) if b == start => Some((a, end)),
            Some(_) => return None,
        };
    }
    range.map(|(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Dist, Layout};
    use crate::plan::Plan;

    fn chunk_fill(spans: &[Span]) -> u64 {
        spans.iter().map(Span::elements).sum()
    }

    /// Every (source, destination) offset pair in stream order.
    fn pairs(spans: &[Span]) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for s in spans {
            for i in 0..s.count {
                for e in 0..s.len {
                    v.push((s.src + i * s.src_stride + e, s.dst + i * s.dst_stride + e));
                }
            }
        }
        v
    }

    #[test]
    fn coalescing_keeps_the_pairs_and_merges_rows() {
        let n = 256;
        let (b64, b16) = (Dist::BlockCyclic(64), Dist::BlockCyclic(16));
        for dd in [[b16, b16], [Dist::Cyclic, Dist::Cyclic], [b64, Dist::Block]] {
            let s = Layout::new(&[n, n], &[b64, b64], &[2, 1]).unwrap();
            let d = Layout::new(&[n, n], &dd, &[1, 2]).unwrap();
            let plan = Plan::new(&s, &d).unwrap();
            for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let spans = plan.spans(a, b).unwrap();
                let merged = coalesce(&spans);
                assert_eq!(pairs(&merged), pairs(&spans), "{dd:?} {a}->{b}");
                // At most one span per source row (128 rows per source rank).
                assert!(
                    merged.len() <= 128,
                    "{dd:?} {a}->{b}: {} spans",
                    merged.len()
                );
            }
        }
    }

    #[test]
    fn chunks_cover_the_stream_in_order() {
        let cases = [
            (
                vec![1000u64],
                vec![Dist::Block],
                vec![Dist::Cyclic],
                1u64,
                2u64,
            ),
            (
                vec![1000],
                vec![Dist::Block],
                vec![Dist::BlockCyclic(7)],
                3,
                2,
            ),
            (vec![1000], vec![Dist::Cyclic], vec![Dist::Block], 2, 3),
            (vec![1000], vec![Dist::Block], vec![Dist::Block], 2, 2),
            (
                vec![37, 41],
                vec![Dist::BlockCyclic(5), Dist::Block],
                vec![Dist::Cyclic, Dist::BlockCyclic(3)],
                2,
                3,
            ),
        ];
        for (shape, sd, dd, p, q) in cases {
            let grid = |n: u64| {
                let mut g = vec![1; shape.len()];
                g[0] = n;
                g
            };
            let s = Layout::new(&shape, &sd, &grid(p)).unwrap();
            let d = Layout::new(&shape, &dd, &grid(q)).unwrap();
            let plan = Plan::new(&s, &d).unwrap();
            for a in 0..p {
                for b in 0..q {
                    let spans = plan.spans(a, b).unwrap();
                    let want = pairs(&spans);
                    for size in [1, 2, 3, 7, 16, 64, 1000, 5000] {
                        let c = Chunked::new(&spans, size);
                        assert_eq!(pairs(&c.spans), want, "{sd:?}->{dd:?} {a}->{b} size {size}");
                        let mut pos = 0;
                        for (i, ch) in c.chunks.iter().enumerate() {
                            assert_eq!(ch.start, pos);
                            let cs = c.chunk_spans(i);
                            assert_eq!(chunk_fill(cs), ch.len);
                            let p = pairs(cs);
                            let contiguous_on = |f: fn(&(u64, u64)) -> u64| {
                                p.windows(2).all(|w| f(&w[1]) == f(&w[0]) + 1)
                            };
                            assert_eq!(ch.src_contiguous.is_some(), contiguous_on(|x| x.0));
                            assert_eq!(ch.dst_contiguous.is_some(), contiguous_on(|x| x.1));
                            if let Some(o) = ch.src_contiguous {
                                assert_eq!(o, p[0].0);
                            }
                            if let Some(o) = ch.dst_contiguous {
                                assert_eq!(o, p[0].1);
                            }
                            let both = ch.src_contiguous.is_some() && ch.dst_contiguous.is_some();
                            assert!(ch.len <= size || (c.chunks.len() == 1 && both));
                            pos += ch.len;
                        }
                        assert_eq!(pos, want.len() as u64);
                    }
                }
            }
        }
    }
}

//! One dimension of a layout: the only place where index arithmetic for a distribution lives.
//!
//! Every distribution is treated as block-cyclic: `extent` indices are cut into blocks of
//! `block` consecutive indices, dealt round robin to `procs` processes. Cyclic is block size 1;
//! block is block size `ceil(extent / procs)` (the HPF / ScaLAPACK convention: every process but
//! the last ones gets a full block, trailing processes may get a short or empty one). One formula
//! for all three keeps owner, local offset and the redistribution planner in one place.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How one dimension is distributed over its axis of the process grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dist {
    /// Contiguous blocks of `ceil(extent / procs)` indices, one per process.
    Block,
    /// Index `i` on process `i mod procs`.
    Cyclic,
    /// Blocks of the given size dealt round robin (ScaLAPACK's block-cyclic).
    BlockCyclic(u64),
}

impl std::fmt::Display for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dist::Block => write!(f, "block"),
            Dist::Cyclic => write!(f, "cyclic"),
            Dist::BlockCyclic(b) => write!(f, "block-cyclic({b})"),
        }
    }
}

impl std::str::FromStr for Dist {
    type Err = Error;

    /// Parses `block`, `cyclic`, `block-cyclic(64)` or the short forms `b`, `c`, `bc64`.
    fn from_str(s: &str) -> Result<Dist> {
        let t = s.trim().to_ascii_lowercase();
        let parse_block = |digits: &str| -> Result<Dist> {
            digits
                .trim()
                .parse::<u64>()
                .map(Dist::BlockCyclic)
                .map_err(|_| {
                    Error::InvalidArgument(format!("bad block size in distribution {s:?}"))
                })
        };
        match t.as_str() {
            "block" | "b" => Ok(Dist::Block),
            "cyclic" | "c" => Ok(Dist::Cyclic),
            _ => {
                if let Some(rest) = t
                    .strip_prefix("block-cyclic(")
                    .and_then(|r| r.strip_suffix(')'))
                {
                    parse_block(rest)
                } else if let Some(rest) = t.strip_prefix("bc") {
                    parse_block(rest)
                } else {
                    Err(Error::InvalidArgument(format!(
                        "unknown distribution {s:?} (expected block, cyclic or block-cyclic(N))"
                    )))
                }
            }
        }
    }
}

/// A resolved dimension: `extent` indices in blocks of `block`, round robin over `procs`.
///
/// Decoding goes through [`DimLayout::new`] (`try_from`): a zero `procs` or `block`, or a
/// `block` other than the one `dist` resolves to, is refused (every division here trusts them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawDim")]
pub struct DimLayout {
    extent: u64,
    procs: u64,
    block: u64,
    dist: Dist,
}

/// A dimension as it travels, unchecked (the same fields, so the encoding is unchanged).
#[derive(Deserialize)]
struct RawDim {
    extent: u64,
    procs: u64,
    block: u64,
    dist: Dist,
}

impl TryFrom<RawDim> for DimLayout {
    type Error = String;

    fn try_from(raw: RawDim) -> std::result::Result<DimLayout, String> {
        let note = |m: String| crate::error::note_decode_error(format!("invalid layout: {m}"));
        if raw.procs == 0 {
            return Err(note("a dimension over 0 processes".into()));
        }
        if raw.dist == Dist::BlockCyclic(0) {
            return Err(note("a block size of 0".into()));
        }
        let d =
            DimLayout::new(raw.extent, raw.procs, raw.dist, 0).map_err(|e| note(e.to_string()))?;
        if d.block != raw.block {
            return Err(note(format!(
                "block size {} does not match distribution {} of {} indices over {} processes",
                raw.block, raw.dist, raw.extent, raw.procs
            )));
        }
        Ok(d)
    }
}

impl DimLayout {
    /// Resolves `dist` for `extent` indices over `procs` processes.
    ///
    /// `dim` is only used in error messages.
    pub fn new(extent: u64, procs: u64, dist: Dist, dim: usize) -> Result<DimLayout> {
        if procs == 0 {
            return Err(Error::BadGrid(format!(
                "dimension {dim} has 0 processes; every grid extent must be at least 1"
            )));
        }
        let block = match dist {
            Dist::Cyclic => 1,
            Dist::Block => extent.div_ceil(procs).max(1),
            Dist::BlockCyclic(0) => return Err(Error::ZeroBlock { dim }),
            Dist::BlockCyclic(b) => b,
        };
        Ok(DimLayout {
            extent,
            procs,
            block,
            dist,
        })
    }

    /// Number of global indices.
    pub fn extent(&self) -> u64 {
        self.extent
    }

    /// Number of processes along this grid axis.
    pub fn procs(&self) -> u64 {
        self.procs
    }

    /// The resolved block size (1 for cyclic).
    pub fn block(&self) -> u64 {
        self.block
    }

    /// The distribution as it was asked for.
    pub fn dist(&self) -> Dist {
        self.dist
    }

    /// Number of blocks, the last one possibly short.
    pub fn block_count(&self) -> u64 {
        self.extent.div_ceil(self.block)
    }

    /// Number of full blocks owned by `p` (the short final block, if any, not counted).
    pub fn full_blocks_of(&self, p: u64) -> u64 {
        let full = self.extent / self.block;
        full / self.procs + u64::from(p < full % self.procs)
    }

    /// Process owning global index `g` (which must be `< extent`).
    pub fn owner(&self, g: u64) -> u64 {
        (g / self.block) % self.procs
    }

    /// Offset of global index `g` in its owner's local storage.
    pub fn local_offset(&self, g: u64) -> u64 {
        (g / self.block / self.procs) * self.block + g % self.block
    }

    /// Global index of local offset `l` on process `p` (which must be `< local_len(p)`).
    pub fn global_index(&self, p: u64, l: u64) -> u64 {
        ((l / self.block) * self.procs + p) * self.block + l % self.block
    }

    /// Number of indices process `p` holds.
    pub fn local_len(&self, p: u64) -> u64 {
        let full = self.extent / self.block;
        let rem = self.extent % self.block;
        let mut len = self.full_blocks_of(p) * self.block;
        if rem > 0 && full % self.procs == p {
            len += rem;
        }
        len
    }

    /// Calls `f(global_start, local_start, len)` for each block process `p` holds, in local
    /// order (which is also global order).
    pub fn for_each_local_block(&self, p: u64, mut f: impl FnMut(u64, u64, u64)) {
        let mut k = p;
        let mut local = 0;
        let nblocks = self.block_count();
        while k < nblocks {
            let g0 = k * self.block;
            let len = self.block.min(self.extent - g0);
            f(g0, local, len);
            local += len;
            match k.checked_add(self.procs) {
                Some(next) => k = next,
                None => break,
            }
        }
    }
}

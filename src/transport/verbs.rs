//! RDMA verbs: which devices this host has, and the data path a process requires
//! (`JUXMEM_TRANSPORT`).
//!
//! The verbs data path itself (snapshots registered for remote reads, pieces fetched by RDMA
//! READ, completions polled with timeouts) is not in this version. The machines juxmem is built
//! and tested on have no RDMA device and no Soft-RoCE, and code that has never met a device
//! would only pretend. What is here is what can be checked on such machines: device
//! detection through libibverbs (cargo feature `rdma`, with `rdma-sys`), and the refusal to
//! start, with the reason, of a process that requires verbs (`JUXMEM_TRANSPORT=verbs`), so that
//! nothing falls back to TCP silently.

use crate::error::{Error, Result};

/// The data path a process requires between its processes and its peers' (`JUXMEM_TRANSPORT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// Shared memory with processes of this host, TCP (with TLS unless asked otherwise)
    /// between hosts.
    #[default]
    Auto,
    /// TCP with every peer, this host's included (no shared-memory reads).
    Tcp,
    /// RDMA verbs between hosts: refused at start where it cannot be had.
    Verbs,
}

impl Transport {
    /// `auto`, `tcp` or `verbs`.
    pub fn parse(s: &str) -> Result<Transport> {
        match s {
            "auto" => Ok(Transport::Auto),
            "tcp" => Ok(Transport::Tcp),
            "verbs" => Ok(Transport::Verbs),
            other => Err(Error::InvalidArgument(format!(
                "JUXMEM_TRANSPORT={other:?}: expected auto, tcp or verbs"
            ))),
        }
    }

    /// Whether a process may start with it here: `Verbs` only where the verbs data path
    /// exists, which is nowhere in this version (the error says what this host lacks first).
    pub fn check(self) -> Result<()> {
        if self != Transport::Verbs {
            return Ok(());
        }
        let why = match devices() {
            Err(e) => e.to_string(),
            Ok(d) if d.is_empty() => {
                "this host has no RDMA device (libibverbs lists none)".to_string()
            }
            Ok(d) => format!(
                "this host has RDMA devices ({}), but this version of juxmem has no verbs data \
                 path yet",
                d.join(", ")
            ),
        };
        Err(Error::InvalidArgument(format!(
            "JUXMEM_TRANSPORT=verbs cannot be had: {why}; unset it (or set auto or tcp) to \
             use TCP between hosts"
        )))
    }
}

/// The RDMA devices of this host, by name (none where the kernel has no RDMA support), or an
/// error saying why they cannot be listed (built without the `rdma` feature).
pub fn devices() -> Result<Vec<String>> {
    #[cfg(feature = "rdma")]
    {
        let mut n: std::os::raw::c_int = 0;
        // SAFETY: libibverbs returns a NULL-terminated array of `n` device pointers (or NULL,
        // with no device), which we read and then free with its own function.
        unsafe {
            let list = rdma_sys::ibv_get_device_list(&mut n);
            if list.is_null() {
                return Ok(Vec::new());
            }
            let mut names = Vec::new();
            for i in 0..usize::try_from(n).unwrap_or(0) {
                let dev = *list.add(i);
                if dev.is_null() {
                    break;
                }
                let name = rdma_sys::ibv_get_device_name(dev);
                if !name.is_null() {
                    names.push(
                        std::ffi::CStr::from_ptr(name)
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
            rdma_sys::ibv_free_device_list(list);
            Ok(names)
        }
    }
    #[cfg(not(feature = "rdma"))]
    {
        Err(Error::InvalidArgument(
            "this juxmem was built without the `rdma` cargo feature (libibverbs), so it cannot \
             look for RDMA devices"
                .into(),
        ))
    }
}

/// One line on RDMA for `juxmem status`: the devices found, or why none can be listed.
pub fn describe() -> String {
    match devices() {
        Ok(d) if d.is_empty() => "RDMA: no device on this host (libibverbs lists none)".into(),
        Ok(d) => format!(
            "RDMA: devices {} (the verbs data path is not in this version: data goes over TCP)",
            d.join(", ")
        ),
        Err(e) => format!("RDMA: not looked for ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse_and_only_verbs_can_be_refused() {
        assert_eq!(Transport::parse("auto").unwrap(), Transport::Auto);
        assert_eq!(Transport::parse("tcp").unwrap(), Transport::Tcp);
        assert!(Transport::parse("infiniband").is_err());
        assert!(Transport::Auto.check().is_ok());
        assert!(Transport::Tcp.check().is_ok());
        let e = Transport::Verbs.check().unwrap_err().to_string();
        assert!(e.contains("JUXMEM_TRANSPORT=verbs cannot be had"), "{e}");
    }
}

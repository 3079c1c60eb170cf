//! [`LoadError`]: why the eBPF probe could not start, shared by the
//! loader (`ebpf.rs`) and the demand programs (`demand.rs`) without either
//! importing the other.

/// Why the eBPF probe could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The process lacks the capabilities the kernel asks for.
    #[error(
        "missing rights to load eBPF programs (effective capabilities {caps:#x}); run as root or grant CAP_BPF and CAP_PERFMON (setcap cap_bpf,cap_perfmon+ep host; in a container or Swarm service cap_add BPF and PERFMON, or SYS_ADMIN on Docker Engine 20.10, which knows neither: see deploy/README.md)"
    )]
    MissingRights {
        /// The process's effective capability mask.
        caps: u64,
    },
    /// The kernel has no BTF, which CO-RE and tp_btf need.
    #[error("reading kernel BTF from /sys/kernel/btf/vmlinux (the kernel needs CONFIG_DEBUG_INFO_BTF=y): {0}")]
    Btf(#[source] aya::BtfError),
    /// Creating maps or relocating the object failed.
    #[error("loading the eBPF object: {0}")]
    Object(#[source] aya::EbpfError),
    /// The verifier refused a program, or attaching failed.
    #[error("loading or attaching the {program} program: {source}")]
    Program {
        /// Program name in `ebpf/probe.bpf.c`.
        program: &'static str,
        /// aya's error, with the verifier log when there is one.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map the object must define is missing or has the wrong type.
    #[error("eBPF map {name}: {source}")]
    Map {
        /// Map name in `ebpf/probe.bpf.c`.
        name: &'static str,
        /// What was wrong.
        #[source]
        source: aya::maps::MapError,
    },
    /// A map the object must define is missing.
    #[error("eBPF map {0} is missing from the object; rebuild the host")]
    MissingMap(&'static str),
    /// The configured ring-buffer size cannot be used.
    #[error("{0}")]
    RingBuffer(String),
}

//! Facts about the machine a run was measured on, and the `/proc` readers the runner samples
//! (load average, a process's resident set).

use std::path::Path;
use std::process::Command;

/// `model name` of the first CPU in `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// The 1-minute load average of `/proc/loadavg` text.
pub fn parse_load_average(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// `VmRSS` in KiB from `/proc/PID/status` text.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmRSS:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .as_deref()
        .and_then(parse_cpu_model)
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .as_deref()
        .and_then(parse_load_average)
        .unwrap_or(f64::NAN)
}

/// CPUs of the machine (`processor` entries of `/proc/cpuinfo`): neither the affinity mask of
/// the pinned runner nor a cgroup quota, which `available_parallelism` would report.
pub fn nproc() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|cpuinfo| count_processors(&cpuinfo))
        .filter(|count| *count > 0)
        .unwrap_or(1)
}

/// Number of `processor` entries in `/proc/cpuinfo` text.
pub fn count_processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|line| {
            line.split(':')
                .next()
                .is_some_and(|key| key.trim() == "processor")
        })
        .count()
}

/// Short commit of the work tree, with `-dirty` when it has uncommitted changes.
pub fn commit(repo: &Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(head) = run(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_owned();
    };
    match run(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if !changes.is_empty() => format!("{head}-dirty"),
        _ => head,
    }
}

/// Whether `taskset` can pin processes (present and at least two CPUs).
pub fn can_pin() -> bool {
    nproc() >= 2
        && Command::new("taskset")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
}

/// Resident set of process `pid` in KiB, `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .as_deref()
        .and_then(parse_vm_rss_kib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            parse_cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(
            parse_load_average("3.39 3.98 3.66 2/321 4242\n"),
            Some(3.39)
        );
        let status = "Name:\tllm-proxy\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
        assert_eq!(parse_cpu_model(""), None);
        assert_eq!(
            count_processors("processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\n"),
            2
        );
    }

    #[test]
    fn own_process_has_a_resident_set() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}

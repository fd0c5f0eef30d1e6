//! `/proc/PID/cgroup` as each runtime and layout writes it (v1 and v2),
//! and the limit files' values.

use super::*;

const ID: &str = "4f8e3a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab";

fn id_of(c: &Cgroup) -> Option<(&'static str, &str)> {
    c.container.as_ref().map(|c| (c.runtime, c.id.as_str()))
}

/// The pod uid every Kubernetes sample here carries.
const POD: &str = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";

/// `text` parses to a container of `runtime` in the pod, in v1 or not.
fn in_pod(text: &str, runtime: &str, v1: bool) {
    let c = parse(text).unwrap();
    assert_eq!(c.v1, v1, "{text}");
    assert_eq!(id_of(&c), Some((runtime, ID)), "{text}");
    assert_eq!(c.pod_uid.as_deref(), Some(POD), "{text}");
}

#[test]
fn docker_v1_cgroupfs() {
    let text =
        format!("12:pids:/docker/{ID}\n5:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
    let c = parse(&text).unwrap();
    assert!(c.v1);
    assert_eq!(c.path, format!("/docker/{ID}"));
    assert_eq!(id_of(&c), Some(("docker", ID)));
    assert_eq!(c.pod_uid, None);
}

#[test]
fn docker_v2_systemd() {
    let c = parse(&format!("0::/system.slice/docker-{ID}.scope\n")).unwrap();
    assert!(!c.v1);
    assert_eq!(id_of(&c), Some(("docker", ID)));
}

#[test]
fn kubernetes_containerd_v2_systemd_burstable() {
    in_pod(
        &format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope\n"),
        "containerd",
        false,
    );
}

#[test]
fn kubernetes_guaranteed_has_no_qos_level() {
    in_pod(
        &format!("0::/kubepods.slice/kubepods-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope\n"),
        "containerd",
        false,
    );
}

#[test]
fn kubernetes_v1_cgroupfs() {
    in_pod(
        &format!(
            "11:memory:/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/{ID}\n0::/\n"
        ),
        "kubernetes",
        true,
    );
}

#[test]
fn containerd_v1_systemd_colon_form() {
    in_pod(
        &format!("7:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice:cri-containerd:{ID}\n"),
        "containerd",
        true,
    );
}

#[test]
fn crio_and_podman_but_not_their_monitors() {
    let c = parse(&format!("0::/kubepods.slice/crio-{ID}.scope\n")).unwrap();
    assert_eq!(id_of(&c), Some(("cri-o", ID)));
    let c = parse(&format!("0::/machine.slice/libpod-{ID}.scope/container\n")).unwrap();
    // podman's inner "container" directory: the id is a level up; named by
    // the scope only when it is the last component.
    assert_eq!(c.container, None);
    let c = parse(&format!("0::/machine.slice/libpod-{ID}.scope\n")).unwrap();
    assert_eq!(id_of(&c), Some(("podman", ID)));
    let c = parse(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n")).unwrap();
    assert_eq!(c.container, None);
    let c = parse(&format!("0::/system.slice/crio-conmon-{ID}.scope\n")).unwrap();
    assert_eq!(c.container, None);
}

#[test]
fn services_and_this_machine_are_no_container() {
    let c = parse("0::/system.slice/nginx.service\n").unwrap();
    assert_eq!((c.container, c.pod_uid), (None, None));
    // This kind of machine: v1 memory beside an empty v2 line.
    let text = "9:name=systemd:/\n4:memory:/process_api/5e743da4e0f47bebc367aa0a7918edd8\n0::/\n";
    let c = parse(text).unwrap();
    assert!(c.v1);
    assert_eq!(c.path, "/process_api/5e743da4e0f47bebc367aa0a7918edd8");
    assert_eq!(c.container, None);
    assert_eq!(parse("garbage"), None);
}

#[test]
fn limits_max_and_huge_are_none() {
    assert_eq!(parse_limit("max\n", false), None);
    assert_eq!(parse_limit("314572800\n", false), Some(314_572_800));
    assert_eq!(parse_limit("9223372036854771712\n", true), None);
    assert_eq!(parse_limit("314572800\n", true), Some(314_572_800));
}

#[test]
fn stat_fields_by_name() {
    let stat = "cache 10\nrss 20\nrss_huge 0\nshmem 3\ntotal_rss 200\ntotal_shmem 30\n";
    assert_eq!(stat_field(stat, "total_rss"), 200);
    assert_eq!(stat_field(stat, "rss"), 20);
    assert_eq!(stat_field(stat, "shmem"), 3);
    assert_eq!(stat_field(stat, "oom_kill"), 0);
    assert_eq!(
        stat_field("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
        2
    );
}

/// This process's own cgroup, read for real: a path, and usage above 0.
#[test]
fn this_process_has_a_memory_cgroup() {
    let c = of(std::process::id()).unwrap();
    if let Some(m) = c.memory() {
        assert!(m.usage > 0, "{m:?}");
        assert!(m.unreclaimable <= m.usage.max(m.unreclaimable));
    }
}

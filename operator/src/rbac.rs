//! Every Kubernetes API call the operator makes, as RBAC rules (the charts test their Role against it).

/// One RBAC rule: verbs on a resource of an API group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacRule {
    /// API group (`""` = core).
    pub api_group: &'static str,
    /// Resource (plural, optionally `/subresource`).
    pub resource: &'static str,
    /// Verbs used.
    pub verbs: &'static [&'static str],
}

/// Children: applied with SSA (get to compare, create+patch), watched (list+watch), orphan-deleted.
const CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// The rules the operator needs (namespaced resources, in every watched namespace).
pub fn required_rbac() -> Vec<RbacRule> {
    let child = |api_group, resource| RbacRule {
        api_group,
        resource,
        verbs: CHILD_VERBS,
    };
    vec![
        // The resource itself: watched, never written except its status.
        RbacRule {
            api_group: "llm-proxy.io",
            resource: "llmproxies",
            verbs: &["get", "list", "watch"],
        },
        RbacRule {
            api_group: "llm-proxy.io",
            resource: "llmproxies/status",
            verbs: &["get", "patch"],
        },
        // Children. Secrets are also read when referenced and watched to roll pods on change.
        child("apps", "deployments"),
        child("apps", "statefulsets"),
        child("", "services"),
        child("", "secrets"),
        child("", "persistentvolumeclaims"),
        child("", "configmaps"),
        child("autoscaling", "horizontalpodautoscalers"),
        child("networking.k8s.io", "ingresses"),
        // Applied and watched only while the CRD is served (found through API discovery, no CRD read needed).
        RbacRule {
            api_group: "monitoring.coreos.com",
            resource: "servicemonitors",
            verbs: &["get", "list", "watch", "create", "patch", "delete"],
        },
        // Events, one created per change (never folded into a series: see `events.rs`).
        RbacRule {
            api_group: "events.k8s.io",
            resource: "events",
            verbs: &["create"],
        },
        // Leader election, in the lease namespace.
        RbacRule {
            api_group: "coordination.k8s.io",
            resource: "leases",
            verbs: &["get", "create", "update"],
        },
    ]
}

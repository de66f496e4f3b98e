use llm_proxy_operator::crd;

const COMMITTED: &str = include_str!("../../../crds/llmproxies.llm-proxy.io.yaml");

#[test]
fn committed_crd_equals_the_crd_command_output() {
    let generated = crd::crd_yaml().expect("CRD YAML");
    assert!(
        generated == COMMITTED,
        "crds/llmproxies.llm-proxy.io.yaml is stale: run `cargo run -p llm-proxy-operator -- crd > crds/llmproxies.llm-proxy.io.yaml`"
    );
}

#[test]
fn crd_stays_under_200_kib() {
    let size = crd::crd_yaml().expect("CRD YAML").len();
    assert!(size < 200 * 1024, "CRD is {size} bytes");
}

#[test]
fn crd_names_scope_columns_and_status_subresource() {
    let crd = crd::crd();
    let spec = &crd.spec;
    assert_eq!(spec.group, "llm-proxy.io");
    assert_eq!(spec.scope, "Namespaced");
    assert_eq!(spec.names.plural, "llmproxies");
    assert_eq!(
        spec.names.short_names.as_deref(),
        Some(&["llmp".to_owned()][..])
    );
    assert_eq!(
        spec.names.categories.as_deref(),
        Some(&["llm-proxy".to_owned()][..])
    );
    let version = &spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Replicas", "Endpoint", "Age"]);
}

#[test]
fn crd_schema_has_no_defaults() {
    let yaml = crd::crd_yaml().expect("CRD YAML");
    assert!(
        !yaml.lines().any(|l| l.trim_start().starts_with("default:")),
        "schema defaults cause GitOps diffs"
    );
}

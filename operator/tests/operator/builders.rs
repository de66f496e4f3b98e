use std::collections::BTreeMap;

use llm_proxy_operator::apply::is_subset;
use llm_proxy_operator::cache::secret_digest;
use llm_proxy_operator::config::OperatorConfig;
use llm_proxy_operator::kinds::CHILD_KINDS;
use llm_proxy_operator::llmproxy::dereference::{DrawnToken, ReferencedData};
use llm_proxy_operator::llmproxy::resources::{self, secrets::generated_management_secret};
use llm_proxy_operator::llmproxy::{render, validate};
use llm_proxy_operator::memory::{MAX_BACKOFF, backoff};
use llm_proxy_operator::{CONFIG_HASH_ANNOTATION, Error, required_rbac};
use serde_json::{Value, json};

use crate::support::proxy;

fn objects(spec: &str) -> Vec<Value> {
    render(
        &proxy(spec),
        &ReferencedData::offline(),
        &OperatorConfig::default(),
    )
    .expect("render")
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn env_names(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_owned())
        .collect()
}

fn env<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn default_spec_renders_the_proxy_deployment_and_service_only() {
    assert_eq!(kinds(&objects("{}")), ["Deployment/demo", "Service/demo"]);
}

#[test]
fn every_child_has_the_labels_and_a_controller_owner_reference() {
    let all = objects(
        "{env: {DB_DRIVER: postgres, LLM_PROXY_EVENT_BUS: redis-streams}, postgresql: {enabled: true, auth: {password: pw}},
          redis: {external: {addr: 'r:6379'}}, dispatcher: {enabled: true}, persistence: {enabled: true},
          autoscaling: {enabled: true}, ingress: {enabled: true},
          metrics: {enabled: true, serviceMonitor: {enabled: true}, grafanaDashboard: {enabled: true}}}",
    );
    assert_eq!(all.len(), 12, "{:?}", kinds(&all));
    for object in &all {
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "llm-proxy");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "llm-proxy-operator");
        assert!(labels["app.kubernetes.io/component"].is_string());
        assert_eq!(object["metadata"]["namespace"], "ns");
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], "1111-2222");
        assert_eq!(owner["kind"], "LlmProxy");
        assert_eq!(owner["controller"], true);
    }
}

#[test]
fn the_crs_own_labels_are_never_copied_to_children() {
    let mut p = proxy("{}");
    p.metadata.labels = Some(BTreeMap::from([(
        "argocd.argoproj.io/instance".to_owned(),
        "app".to_owned(),
    )]));
    for object in
        render(&p, &ReferencedData::offline(), &OperatorConfig::default()).expect("render")
    {
        assert!(
            object["metadata"]["labels"]
                .get("argocd.argoproj.io/instance")
                .is_none()
        );
    }
}

#[test]
fn proxy_env_follows_the_charts_order() {
    let all = objects(
        "{env: {LOG_LEVEL: debug, A_FIRST: '1'}, redis: {external: {addr: 'r:6379', db: 2, password: {existingSecret: {name: rp}}}}, secrets: {encryptionKey: {existingSecret: {name: ek}}}}",
    );
    let deployment = find(&all, "Deployment", "demo");
    assert_eq!(
        env_names(deployment),
        [
            "A_FIRST",
            "DATABASE_PATH",
            "DB_DRIVER",
            "ENABLE_METRICS",
            "LISTEN_ADDR",
            "LLM_PROXY_EVENT_BUS",
            "LOG_FILE",
            "LOG_FORMAT",
            "LOG_LEVEL",
            "METRICS_PATH",
            "MANAGEMENT_TOKEN",
            "REDIS_ADDR",
            "REDIS_DB",
            "REDIS_PASSWORD",
            "ENCRYPTION_KEY",
        ]
    );
    assert_eq!(env(deployment, "LOG_LEVEL")["value"], "debug");
    assert_eq!(env(deployment, "REDIS_DB")["value"], "2");
    assert_eq!(
        env(deployment, "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"],
        json!({"name": "rp", "key": "REDIS_PASSWORD"})
    );
    assert_eq!(
        env(deployment, "ENCRYPTION_KEY")["valueFrom"]["secretKeyRef"],
        json!({"name": "ek", "key": "ENCRYPTION_KEY"})
    );
    // No management token named anywhere: the generated Secret.
    assert_eq!(
        env(deployment, "MANAGEMENT_TOKEN")["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-management", "key": "MANAGEMENT_TOKEN"})
    );
}

#[test]
fn in_cluster_postgres_uses_pgpassword_expansion_and_keeps_the_password_out_of_env() {
    let all = objects(
        "{env: {DB_DRIVER: postgres}, postgresql: {enabled: true, auth: {password: s3cret-pw}}}",
    );
    let deployment = find(&all, "Deployment", "demo");
    let names = env_names(deployment);
    let pg = names
        .iter()
        .position(|n| n == "PGPASSWORD")
        .expect("PGPASSWORD");
    assert_eq!(names[pg + 1], "DATABASE_URL");
    assert_eq!(
        env(deployment, "DATABASE_URL")["value"],
        "postgres://llmproxy:$(PGPASSWORD)@demo-postgresql:5432/llmproxy?sslmode=disable"
    );
    assert_eq!(
        env(deployment, "PGPASSWORD")["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-config", "key": "postgresql-password"})
    );
    let text = serde_json::to_string(&all).expect("json");
    assert!(
        !text.contains("s3cret-pw"),
        "plaintext password rendered outside the Secret's base64 data"
    );
    let config = find(&all, "Secret", "demo-config");
    assert_eq!(config["data"]["postgresql-password"], "czNjcmV0LXB3");
    let sts = find(&all, "StatefulSet", "demo-postgresql");
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/library/postgres:17"
    );
    assert!(
        find(&all, "Service", "demo-postgresql")["spec"]
            .get("clusterIP")
            .is_none()
    );
}

#[test]
fn chart_managed_plaintext_secrets_go_into_the_config_secret() {
    let all = objects(
        "{env: {DB_DRIVER: postgres}, secrets: {create: true, data: {managementToken: tok-123, databaseUrl: 'postgres://u:p@h/db'}}}",
    );
    let deployment = find(&all, "Deployment", "demo");
    assert_eq!(
        env(deployment, "MANAGEMENT_TOKEN")["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-config", "key": "MANAGEMENT_TOKEN"})
    );
    assert_eq!(
        env(deployment, "DATABASE_URL")["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-config", "key": "DATABASE_URL"})
    );
    let text = serde_json::to_string(deployment).expect("json");
    assert!(!text.contains("tok-123") && !text.contains("u:p@h"));
}

#[test]
fn autoscaling_leaves_replicas_to_the_hpa() {
    let spec = "{env: {DB_DRIVER: postgres}, secrets: {databaseUrl: {existingSecret: {name: db}}}, autoscaling: {enabled: true, minReplicas: 2, maxReplicas: 20, targetCPUUtilizationPercentage: 75, targetMemoryUtilizationPercentage: 80}}";
    let all = objects(spec);
    assert!(
        find(&all, "Deployment", "demo")["spec"]
            .get("replicas")
            .is_none()
    );
    let hpa = find(&all, "HorizontalPodAutoscaler", "demo");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 20);
    assert_eq!(hpa["spec"]["metrics"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        75
    );
    let without = objects("replicaCount: 1");
    assert_eq!(find(&without, "Deployment", "demo")["spec"]["replicas"], 1);
}

#[test]
fn toggles_add_and_remove_children() {
    let base = kinds(&objects("{}"));
    let with_ingress = kinds(&objects("ingress: {enabled: true}"));
    assert_eq!(with_ingress.len(), base.len() + 1);
    assert!(with_ingress.contains(&"Ingress/demo".to_owned()));
    let metrics = kinds(&objects(
        "metrics: {enabled: true, serviceMonitor: {enabled: true}, grafanaDashboard: {enabled: true}}",
    ));
    assert!(metrics.contains(&"ServiceMonitor/demo".to_owned()));
    assert!(metrics.contains(&"ConfigMap/demo-dashboard".to_owned()));
    // Sub-toggles need metrics.enabled, as in the chart.
    assert_eq!(
        kinds(&objects(
            "metrics: {serviceMonitor: {enabled: true}, grafanaDashboard: {enabled: true}}"
        )),
        base
    );
    // No ServiceMonitor when its CRD is not served.
    let referenced = ReferencedData {
        service_monitor_crd_served: false,
        ..ReferencedData::default()
    };
    let p = proxy("metrics: {enabled: true, serviceMonitor: {enabled: true}}");
    let rendered = render(&p, &referenced, &OperatorConfig::default()).expect("render");
    assert!(!kinds(&rendered).contains(&"ServiceMonitor/demo".to_owned()));
    assert!(
        kinds(&objects("persistence: {enabled: true}"))
            .contains(&"PersistentVolumeClaim/demo-data".to_owned())
    );
}

#[test]
fn persistence_mounts_the_data_pvc() {
    let all = objects("persistence: {enabled: true, size: 5Gi, storageClass: fast}");
    let pvc = find(&all, "PersistentVolumeClaim", "demo-data");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(pvc["spec"]["storageClassName"], "fast");
    let volumes = &find(&all, "Deployment", "demo")["spec"]["template"]["spec"]["volumes"];
    assert_eq!(
        volumes[1],
        json!({"name": "data", "persistentVolumeClaim": {"claimName": "demo-data"}})
    );
    let without = objects("{}");
    assert_eq!(
        find(&without, "Deployment", "demo")["spec"]["template"]["spec"]["volumes"][1],
        json!({"name": "data", "emptyDir": {}})
    );
}

#[test]
fn selectors_are_disjoint_across_components() {
    let all = objects(
        "{env: {DB_DRIVER: postgres, LLM_PROXY_EVENT_BUS: redis-streams}, postgresql: {enabled: true, auth: {password: pw}},
          redis: {external: {addr: 'r:6379'}}, dispatcher: {enabled: true}}",
    );
    let selector = |kind, name| find(&all, kind, name)["spec"]["selector"]["matchLabels"].clone();
    let proxy_sel = selector("Deployment", "demo");
    let pg_sel = selector("StatefulSet", "demo-postgresql");
    let dispatcher_sel = selector("Deployment", "demo-dispatcher");
    assert_eq!(proxy_sel["app.kubernetes.io/component"], "proxy");
    assert_eq!(pg_sel["app.kubernetes.io/component"], "postgresql");
    assert_eq!(dispatcher_sel["app.kubernetes.io/component"], "dispatcher");
    assert_eq!(find(&all, "Service", "demo")["spec"]["selector"], proxy_sel);
    assert_eq!(
        find(&all, "Service", "demo-postgresql")["spec"]["selector"],
        pg_sel
    );
}

#[test]
fn probes_default_to_the_charts_and_the_dispatcher_gets_health_probes() {
    let all = objects(
        "{env: {LLM_PROXY_EVENT_BUS: redis-streams}, redis: {external: {addr: 'r:6379'}}, dispatcher: {enabled: true, service: file}}",
    );
    let proxy_container =
        &find(&all, "Deployment", "demo")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(proxy_container["args"], json!(["server"]));
    assert_eq!(
        proxy_container["livenessProbe"],
        json!({"httpGet": {"path": "/live", "port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 3})
    );
    assert_eq!(
        proxy_container["readinessProbe"]["httpGet"]["path"],
        "/ready"
    );
    let dispatcher =
        &find(&all, "Deployment", "demo-dispatcher")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        dispatcher["args"],
        json!([
            "dispatcher",
            "--service",
            "file",
            "--endpoint",
            "/app/data/events.jsonl",
            "--buffer",
            "1000",
            "--batch-size",
            "100"
        ])
    );
    assert_eq!(dispatcher["ports"][0]["containerPort"], 8081);
    assert_eq!(
        dispatcher["livenessProbe"]["httpGet"],
        json!({"path": "/health", "port": "health"})
    );
    assert_eq!(
        dispatcher["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": "health"})
    );
    assert!(kinds(&all).contains(&"PersistentVolumeClaim/demo-dispatcher".to_owned()));
}

#[test]
fn probe_overrides_replace_the_defaults_and_bad_ones_are_rejected() {
    let all = objects("livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 7}");
    let probe = &find(&all, "Deployment", "demo")["spec"]["template"]["spec"]["containers"][0]["livenessProbe"];
    assert_eq!(
        probe,
        &json!({"tcpSocket": {"port": 8080}, "periodSeconds": 7})
    );
    let bad = render(
        &proxy("livenessProbe: {periodSeconds: soon}"),
        &ReferencedData::offline(),
        &OperatorConfig::default(),
    );
    assert!(
        matches!(
            bad,
            Err(Error::InvalidOverride {
                field: "livenessProbe",
                ..
            })
        ),
        "{bad:?}"
    );
}

fn hash(spec: &str, referenced: &ReferencedData) -> String {
    let p = proxy(spec);
    let config = OperatorConfig::default();
    let validated = validate::validate(&p, referenced.clone(), &config).expect("valid");
    resources::config_hash(&validated)
}

#[test]
fn config_hash_changes_iff_inputs_change() {
    let spec = "secrets: {managementToken: {existingSecret: {name: mt}}}";
    let data = |token: &str| ReferencedData {
        secrets: BTreeMap::from([(
            "mt".to_owned(),
            Some(BTreeMap::from([(
                "MANAGEMENT_TOKEN".to_owned(),
                secret_digest(token.as_bytes()),
            )])),
        )]),
        service_monitor_crd_served: true,
        drawn_management_token: None,
    };
    let base = hash(spec, &data("one"));
    assert_eq!(base, hash(spec, &data("one")), "deterministic");
    assert_ne!(
        base,
        hash(spec, &data("two")),
        "a changed referenced Secret rolls the pods"
    );
    assert_ne!(
        base,
        hash(
            "{secrets: {managementToken: {existingSecret: {name: mt}}}, env: {LOG_LEVEL: debug}}",
            &data("one")
        )
    );
    assert_eq!(
        base,
        hash(
            "{secrets: {managementToken: {existingSecret: {name: mt}}}, replicaCount: 1, service: {port: 9090}}",
            &data("one")
        )
    );
    let all = render(&proxy(spec), &data("two"), &OperatorConfig::default()).expect("render");
    let annotation = &find(&all, "Deployment", "demo")["spec"]["template"]["metadata"]["annotations"]
        [CONFIG_HASH_ANNOTATION];
    assert_eq!(annotation.as_str(), Some(hash(spec, &data("two")).as_str()));
}

#[test]
fn generated_management_secret_holds_the_token_drawn_for_it() {
    let p = proxy("{}");
    let config = OperatorConfig::default();
    let drawn = |token: Vec<u8>| ReferencedData {
        secrets: BTreeMap::from([(
            "demo-management".to_owned(),
            Some(BTreeMap::from([(
                "MANAGEMENT_TOKEN".to_owned(),
                secret_digest(&token),
            )])),
        )]),
        drawn_management_token: Some(DrawnToken(token)),
        ..ReferencedData::default()
    };
    let secret = |referenced: ReferencedData| {
        let validated = validate::validate(&p, referenced, &config).expect("valid");
        generated_management_secret(&validated)
    };
    let (one, two) = (
        resources::secrets::new_management_token(),
        resources::secrets::new_management_token(),
    );
    assert_eq!(one.len(), 44, "base64 of 32 bytes");
    assert_ne!(one, two, "random");
    let first = secret(drawn(one.clone())).expect("created when missing");
    assert!(
        secret(ReferencedData {
            drawn_management_token: None,
            ..drawn(one.clone())
        })
        .is_none(),
        "an existing Secret is never rewritten"
    );
    assert_eq!(first.metadata.name.as_deref(), Some("demo-management"));
    let token = |s: &k8s_openapi::api::core::v1::Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("MANAGEMENT_TOKEN"))
            .map(|v| v.0.clone())
            .expect("token")
    };
    assert_eq!(
        token(&first),
        one,
        "the drawn token, which the config hash covered"
    );
    assert!(
        first
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("llm-proxy.io/generated"))
    );
    assert_eq!(
        first
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].uid.as_str()),
        Some("1111-2222")
    );
}

#[test]
fn service_gets_metrics_annotations_only_with_metrics_enabled() {
    let on = objects(
        "{metrics: {enabled: true}, service: {annotations: {a: b}, port: 9090, type: NodePort}}",
    );
    let service = find(&on, "Service", "demo");
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(service["metadata"]["annotations"]["a"], "b");
    assert_eq!(
        service["spec"]["ports"][0],
        json!({"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"})
    );
    assert_eq!(service["spec"]["type"], "NodePort");
    assert!(
        find(&objects("{}"), "Service", "demo")["metadata"]
            .get("annotations")
            .is_none()
    );
}

#[test]
fn required_rbac_covers_every_child_kind() {
    let rules = required_rbac();
    for kind in CHILD_KINDS {
        let rule = rules
            .iter()
            .find(|r| r.api_group == kind.group && r.resource == kind.plural)
            .unwrap_or_else(|| panic!("no rule for {}", kind.plural));
        for verb in ["get", "list", "watch", "create", "patch", "delete"] {
            assert!(rule.verbs.contains(&verb), "{} lacks {verb}", kind.plural);
        }
    }
    assert!(
        rules
            .iter()
            .any(|r| r.resource == "llmproxies/status" && r.verbs.contains(&"patch"))
    );
    assert!(
        rules
            .iter()
            .any(|r| r.api_group == "coordination.k8s.io" && r.resource == "leases")
    );
    assert!(
        rules
            .iter()
            .any(|r| r.api_group == "events.k8s.io" && r.verbs.contains(&"create"))
    );
}

#[test]
fn subset_comparison_ignores_server_added_fields_but_not_changes() {
    let desired = json!({"spec": {"replicas": 1, "template": {"containers": [{"name": "a"}]}}});
    let live = json!({"spec": {"replicas": 1, "progressDeadlineSeconds": 600, "template": {"containers": [{"name": "a", "terminationMessagePath": "/dev"}]}}, "status": {}});
    assert!(is_subset(&desired, &live));
    let drifted = json!({"spec": {"replicas": 5, "template": {"containers": [{"name": "a"}]}}});
    assert!(!is_subset(&desired, &drifted));
    let extra_container = json!({"spec": {"replicas": 1, "template": {"containers": [{"name": "a"}, {"name": "b"}]}}});
    assert!(!is_subset(&desired, &extra_container));
    // The API server stores quantities canonically.
    assert!(is_subset(
        &json!({"cpu": "1000m", "memory": "1024Mi"}),
        &json!({"cpu": "1", "memory": "1Gi"})
    ));
    assert!(!is_subset(&json!({"cpu": "500m"}), &json!({"cpu": "1"})));
    assert!(!is_subset(
        &json!({"image": "a:1"}),
        &json!({"image": "a:2"})
    ));
}

#[test]
fn api_failures_back_off_exponentially_up_to_a_cap() {
    assert_eq!(backoff(1).as_secs(), 1);
    assert_eq!(backoff(2).as_secs(), 2);
    assert_eq!(backoff(5).as_secs(), 16);
    assert_eq!(backoff(40), MAX_BACKOFF);
}

#[test]
fn providers_render_a_configmap_mounted_read_only_at_app_config() {
    let all =
        objects("providers: {openai: {base_url: 'https://api.openai.com', models: [gpt-4o]}}");
    let config_map = find(&all, "ConfigMap", "demo-providers");
    let file = config_map["data"]["api_providers.yaml"]
        .as_str()
        .expect("providers file");
    let parsed: Value = serde_saphyr::from_str(file).expect("providers YAML");
    assert_eq!(
        parsed,
        json!({"openai": {"base_url": "https://api.openai.com", "models": ["gpt-4o"]}})
    );
    let pod = &find(&all, "Deployment", "demo")["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume");
    assert_eq!(volume["configMap"]["name"], "demo-providers");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("config mount");
    assert_eq!(mount["mountPath"], "/app/config");
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn without_providers_nothing_is_mounted_at_app_config() {
    for spec in ["{}", "providers: {}", "providers: null"] {
        let all = objects(spec);
        assert!(
            !kinds(&all).contains(&"ConfigMap/demo-providers".to_owned()),
            "{spec}"
        );
        let pod = &find(&all, "Deployment", "demo")["spec"]["template"]["spec"];
        let text = serde_json::to_string(pod).expect("json");
        assert!(!text.contains("/app/config"), "{spec}: {text}");
        assert!(!text.contains("\"config\""), "{spec}: {text}");
    }
}

#[test]
fn changing_providers_changes_the_config_hash() {
    let referenced = ReferencedData::offline();
    assert_ne!(
        hash("providers: {a: {x: 1}}", &referenced),
        hash("providers: {a: {x: 2}}", &referenced)
    );
}

#[test]
fn plaintext_encryption_key_goes_into_the_config_secret() {
    let all = objects("secrets: {create: true, data: {encryptionKey: enc-key-42}}");
    let deployment = find(&all, "Deployment", "demo");
    assert_eq!(
        env(deployment, "ENCRYPTION_KEY")["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-config", "key": "ENCRYPTION_KEY"})
    );
    let config = find(&all, "Secret", "demo-config");
    assert_eq!(config["data"]["ENCRYPTION_KEY"], "ZW5jLWtleS00Mg==");
    let text = serde_json::to_string(&all).expect("json");
    assert!(!text.contains("enc-key-42"));
}

#[test]
fn plaintext_encryption_key_needs_secrets_create() {
    let all = objects("secrets: {data: {encryptionKey: enc-key-42}}");
    let names = env_names(find(&all, "Deployment", "demo"));
    assert!(!names.contains(&"ENCRYPTION_KEY".to_owned()), "{names:?}");
}

const DISPATCHER: &str =
    "env: {LLM_PROXY_EVENT_BUS: redis-streams}\nredis: {external: {addr: 'r:6379'}}\n";

#[test]
fn dispatcher_api_key_value_goes_into_the_config_secret() {
    let all = objects(&format!(
        "{DISPATCHER}dispatcher: {{enabled: true, service: lunary, apiKey: {{value: lun-key-7}}}}"
    ));
    let dispatcher = find(&all, "Deployment", "demo-dispatcher");
    assert_eq!(
        env(dispatcher, "LLM_PROXY_API_KEY")["valueFrom"]["secretKeyRef"],
        json!({"name": "demo-config", "key": "DISPATCHER_API_KEY"})
    );
    let config = find(&all, "Secret", "demo-config");
    assert_eq!(config["data"]["DISPATCHER_API_KEY"], "bHVuLWtleS03");
    let text = serde_json::to_string(&all).expect("json");
    assert!(!text.contains("lun-key-7"));
}

#[test]
fn dispatcher_existing_secret_wins_over_the_value() {
    let all = objects(&format!(
        "{DISPATCHER}dispatcher: {{enabled: true, service: lunary, apiKey: {{value: v, existingSecret: {{name: lun, key: K}}}}}}"
    ));
    let dispatcher = find(&all, "Deployment", "demo-dispatcher");
    assert_eq!(
        env(dispatcher, "LLM_PROXY_API_KEY")["valueFrom"]["secretKeyRef"],
        json!({"name": "lun", "key": "K"})
    );
    assert!(!kinds(&all).contains(&"Secret/demo-config".to_owned()));
}

#[test]
fn dispatcher_gets_its_health_address_explicitly() {
    let all = objects(&format!("{DISPATCHER}dispatcher: {{enabled: true}}"));
    let dispatcher = find(&all, "Deployment", "demo-dispatcher");
    assert_eq!(env_names(dispatcher)[0], "DISPATCHER_HEALTH_ADDR");
    assert_eq!(env(dispatcher, "DISPATCHER_HEALTH_ADDR")["value"], ":8081");
}

#[test]
fn in_cluster_postgres_runs_hardened_with_a_writable_tmp() {
    let all =
        objects("{env: {DB_DRIVER: postgres}, postgresql: {enabled: true, auth: {password: pw}}}");
    let pod = &find(&all, "StatefulSet", "demo-postgresql")["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"],
        json!({
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false
        })
    );
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert_eq!(
        mounts,
        ["/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"]
    );
    let tmp = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "tmp")
        .expect("tmp volume");
    assert!(tmp.get("emptyDir").is_some());
}

#[test]
fn postgres_ssl_mode_defaults_to_disable_and_can_be_set() {
    let spec = "{env: {DB_DRIVER: postgres}, postgresql: {enabled: true, sslMode: verify-full, auth: {password: pw}}}";
    let all = objects(spec);
    let url = env(find(&all, "Deployment", "demo"), "DATABASE_URL")["value"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(url.ends_with("?sslmode=verify-full"), "{url}");
}

#[test]
fn service_monitor_passes_relabelings_through() {
    let mut referenced = ReferencedData::offline();
    referenced.service_monitor_crd_served = true;
    let all = render(
        &proxy(
            "metrics: {enabled: true, serviceMonitor: {enabled: true, relabelings: [{action: replace, targetLabel: team, replacement: ml}], metricRelabelings: [{action: drop, sourceLabels: [__name__], regex: 'go_.*'}]}}",
        ),
        &referenced,
        &OperatorConfig::default(),
    )
    .expect("render");
    let endpoint = &find(&all, "ServiceMonitor", "demo")["spec"]["endpoints"][0];
    assert_eq!(
        endpoint["relabelings"],
        json!([{"action": "replace", "targetLabel": "team", "replacement": "ml"}])
    );
    assert_eq!(
        endpoint["metricRelabelings"],
        json!([{"action": "drop", "sourceLabels": ["__name__"], "regex": "go_.*"}])
    );
}

#[test]
fn redis_enabled_is_accepted_and_has_no_effect() {
    assert_eq!(objects("redis: {enabled: true}"), objects("{}"));
}

#[test]
fn a_referenced_secret_that_is_missing_or_lacks_the_key_is_refused_by_validation() {
    let p = proxy(
        "{secrets: {databaseUrl: {existingSecret: {name: db}}, managementToken: {existingSecret: {name: mt}}}, env: {DB_DRIVER: postgres}}",
    );
    let config = OperatorConfig::default();
    let token = Some(BTreeMap::from([(
        "MANAGEMENT_TOKEN".to_owned(),
        b"t".to_vec(),
    )]));
    let with_db = |db: Option<BTreeMap<String, Vec<u8>>>| ReferencedData {
        secrets: BTreeMap::from([("mt".to_owned(), token.clone()), ("db".to_owned(), db)]),
        ..ReferencedData::default()
    };
    let missing = validate::validate(&p, with_db(None), &config)
        .err()
        .expect("missing");
    assert_eq!(
        missing.to_string(),
        "referenced Secret ns/db (spec.secrets.databaseUrl.existingSecret) does not exist"
    );
    let no_key = validate::validate(&p, with_db(Some(BTreeMap::new())), &config)
        .err()
        .expect("no key");
    assert_eq!(
        no_key.to_string(),
        "referenced Secret ns/db has no key \"DATABASE_URL\" (spec.secrets.databaseUrl.existingSecret)"
    );
    let url = Some(BTreeMap::from([(
        "DATABASE_URL".to_owned(),
        b"postgres://h/db".to_vec(),
    )]));
    assert!(validate::validate(&p, with_db(url), &config).is_ok());
    // A chart rule is reported before a missing Secret, as the chart would.
    let both = proxy(
        "{secrets: {databaseUrl: {existingSecret: {name: db}}}, env: {DB_DRIVER: postgres}, postgresql: {enabled: true, auth: {password: x}}}",
    );
    let error = validate::validate(&both, with_db(None), &config)
        .err()
        .expect("invalid");
    assert_eq!(error.category(), "InvalidSpec");
}

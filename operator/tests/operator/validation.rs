use llm_proxy_operator::crd::messages as validate;
use llm_proxy_operator::llmproxy::validate::chart_rules as validate_spec;

use crate::support::{cel_errors, proxy, raw};

/// (spec, the chart's message from `validate`, the message CEL reports if CEL checks the rule).
fn cases() -> Vec<(&'static str, String, Option<String>)> {
    let same = |m: &str| (m.to_owned(), Some(m.to_owned()));
    let neither_cel = validate::POSTGRES_NEITHER
        .replace("\n  ", " ")
        .replace(":\n", ":");
    let mut cases = Vec::new();
    let mut add = |spec: &'static str, (message, cel): (String, Option<String>)| {
        cases.push((spec, message, cel))
    };
    // Reconciler only (see the `cel` module of `crd`).
    add(
        "redis: {external: {addr: 'default:hunter2@redis:6379'}}",
        (validate::REDIS_ADDR_WITH_CREDENTIALS.to_owned(), None),
    );
    add(
        "redis: {external: {addr: 'redis://:hunter2@redis:6379'}}",
        (validate::REDIS_ADDR_WITH_CREDENTIALS.to_owned(), None),
    );
    add(
        "autoscaling: {enabled: true, targetCPUUtilizationPercentage: null}",
        (validate::AUTOSCALING_NO_TARGETS.to_owned(), None),
    );
    add(
        "dispatcher: {enabled: true}",
        same(
            "Configuration error: Dispatcher requires LLM_PROXY_EVENT_BUS to be 'redis' or 'redis-streams', but it is set to 'in-memory'. Set LLM_PROXY_EVENT_BUS to a supported durable event bus type and configure redis.external.addr.",
        ),
    );
    add(
        "{env: {LLM_PROXY_EVENT_BUS: redis-streams}, dispatcher: {enabled: true}}",
        same(
            "Configuration error: Dispatcher is enabled with LLM_PROXY_EVENT_BUS='redis-streams' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address.",
        ),
    );
    add(
        "{env: {LLM_PROXY_EVENT_BUS: redis-streams}, redis: {external: {addr: 'r:6379'}}, dispatcher: {enabled: true, service: lunary}}",
        same(
            "Configuration error: Dispatcher service 'lunary' requires an API key via existingSecret. Please set dispatcher.apiKey.existingSecret.name",
        ),
    );
    add(
        "{env: {LLM_PROXY_EVENT_BUS: redis-streams}, redis: {external: {addr: 'r:6379'}}, dispatcher: {enabled: true, service: kafka}}",
        same(
            "Configuration error: dispatcher.service is set to 'kafka'. Please set it to 'file', 'lunary' or 'helicone'.",
        ),
    );
    add(
        "env: {LLM_PROXY_EVENT_BUS: redis}",
        same(
            "Configuration error: LLM_PROXY_EVENT_BUS is set to 'redis' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address (e.g., 'redis.example.com:6379') or change LLM_PROXY_EVENT_BUS to 'in-memory' for single-instance deployments.",
        ),
    );
    add(
        "{env: {DB_DRIVER: postgres}, postgresql: {enabled: true, auth: {password: x}}, secrets: {databaseUrl: {existingSecret: {name: db}}}}",
        same(validate::POSTGRES_BOTH),
    );
    add(
        "env: {DB_DRIVER: postgres}",
        (validate::POSTGRES_NEITHER.to_owned(), Some(neither_cel)),
    );
    add(
        "{env: {DB_DRIVER: postgres}, postgresql: {enabled: true}}",
        same(validate::POSTGRES_NO_PASSWORD),
    );
    add(
        "postgresql: {enabled: true, auth: {password: x}}",
        same(
            "Configuration error: postgresql.enabled=true but DB_DRIVER is set to 'sqlite'. When using in-cluster PostgreSQL, DB_DRIVER must be set to 'postgres'.",
        ),
    );
    add(
        "secrets: {encryptionKey: {required: true}}",
        same(validate::ENCRYPTION_KEY_REQUIRED),
    );
    add(
        "secrets: {encryptionKey: {required: true}, data: {encryptionKey: k}}",
        same(validate::ENCRYPTION_KEY_REQUIRED),
    );
    add(
        "replicaCount: 3",
        same(
            "Configuration error: DB_DRIVER is 'sqlite' but the deployment can scale to 3 replicas. SQLite is not supported for multi-pod deployments. Set env.DB_DRIVER to 'mysql' or 'postgres' and configure secrets.databaseUrl / mysql.enabled / postgresql.enabled.",
        ),
    );
    cases
}

#[test]
fn validate_reports_each_chart_failure_verbatim() {
    for (spec, message, _) in cases() {
        let error = validate_spec(&proxy(spec).spec).expect_err(spec);
        assert_eq!(error.0, message, "{spec}");
    }
}

#[test]
fn cel_rules_report_each_chart_failure() {
    for (spec, _, cel_message) in cases() {
        let errors = cel_errors(&raw(spec));
        match cel_message {
            Some(message) => assert!(errors.contains(&message), "{spec}: CEL said {errors:?}"),
            None => assert!(
                !errors.contains(&validate::AUTOSCALING_NO_TARGETS.to_owned()),
                "{spec}"
            ),
        }
    }
}

#[test]
fn the_neither_message_keeps_the_charts_line_breaks() {
    assert!(
        validate::POSTGRES_NEITHER.contains("Please either:\n  1. Enable in-cluster PostgreSQL")
    );
}

#[test]
fn valid_specs_pass_both_checks() {
    for spec in [
        "{}",
        "{env: {DB_DRIVER: postgres}, postgresql: {enabled: true, auth: {existingSecret: pg}}}",
        "{env: {DB_DRIVER: postgres}, secrets: {create: true, data: {databaseUrl: 'postgres://x'}}, replicaCount: 3}",
        "{autoscaling: {enabled: true, maxReplicas: 1}}",
        "{autoscaling: {enabled: true, maxReplicas: 1, targetCPUUtilizationPercentage: null, targetMemoryUtilizationPercentage: 70}}",
        "{env: {LLM_PROXY_EVENT_BUS: redis-streams}, redis: {external: {addr: 'r:6379'}}, dispatcher: {enabled: true}}",
        "{env: {LLM_PROXY_EVENT_BUS: redis-streams}, redis: {enabled: true, external: {addr: 'r:6379'}}, dispatcher: {enabled: true, service: helicone, apiKey: {value: k}}}",
        "{secrets: {encryptionKey: {required: true, existingSecret: {name: enc}}}}",
        "{secrets: {create: true, data: {encryptionKey: k}, encryptionKey: {required: true}}}",
    ] {
        assert_eq!(validate_spec(&proxy(spec).spec), Ok(()), "{spec}");
        assert_eq!(cel_errors(&raw(spec)), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn autoscaling_counts_max_replicas_for_the_sqlite_guard() {
    let error = validate_spec(&proxy("autoscaling: {enabled: true}").spec)
        .expect_err("sqlite with HPA max 10");
    assert!(error.0.contains("can scale to 10 replicas"), "{}", error.0);
}

#[test]
fn error_categories_decide_between_waiting_and_backoff() {
    use llm_proxy_operator::Error;
    let invalid =
        Error::from(validate_spec(&proxy("replicaCount: 2").spec).expect_err("sqlite x2"));
    assert_eq!(invalid.category(), "InvalidSpec");
    assert!(invalid.is_spec_problem());
    let missing = Error::MissingSecret {
        namespace: "ns".into(),
        name: "db".into(),
        field: "secrets.databaseUrl.existingSecret",
    };
    assert_eq!(missing.category(), "MissingSecret");
    assert!(missing.is_spec_problem());
    assert_eq!(
        missing.to_string(),
        "referenced Secret ns/db (spec.secrets.databaseUrl.existingSecret) does not exist"
    );
    let api = Error::kube(
        "apply Deployment/demo",
        kube::Error::Api(Box::new(
            kube::core::Status::failure("conflict", "Conflict").with_code(409),
        )),
    );
    assert!(api.to_string().contains("(apply Deployment/demo)"), "{api}");
    assert_eq!(api.category(), "KubeApiError");
    assert!(!api.is_spec_problem());
}

#[test]
fn an_env_value_the_proxy_would_refuse_is_refused_with_the_proxys_message() {
    use llm_proxy_operator::llmproxy::validate::env_values;
    let refused = |spec: &str| env_values(&proxy(spec).spec).expect_err(spec).0;
    // The proxy's own check, word for word, behind the spec field.
    for (spec, field, name, value) in [
        (
            "env: {SHUTDOWN_TIMEOUT: soon}",
            "env.SHUTDOWN_TIMEOUT",
            "SHUTDOWN_TIMEOUT",
            "soon",
        ),
        (
            "env: {REQUEST_TIMEOUT: '30'}",
            "env.REQUEST_TIMEOUT",
            "REQUEST_TIMEOUT",
            "30",
        ),
        (
            "env: {AUDIT_ENABLED: maybe}",
            "env.AUDIT_ENABLED",
            "AUDIT_ENABLED",
            "maybe",
        ),
        (
            "env: {LOG_LEVEL: loud}",
            "env.LOG_LEVEL",
            "LOG_LEVEL",
            "loud",
        ),
        (
            "env: {MAX_CONCURRENT_REQUESTS: '-1'}",
            "env.MAX_CONCURRENT_REQUESTS",
            "MAX_CONCURRENT_REQUESTS",
            "-1",
        ),
        (
            "redis: {external: {addr: 'r:6379', db: -1}}",
            "redis.external.db",
            "REDIS_DB",
            "-1",
        ),
    ] {
        let proxy_message = llm_proxy_env::check(name, value)
            .expect_err(name)
            .to_string();
        assert_eq!(
            refused(spec),
            format!("spec.{field}: {proxy_message}"),
            "{spec}"
        );
    }
    // A secret variable's value is never shown.
    let message = refused("env: {DATABASE_URL: 'mysql://app:hunter2@db/app'}");
    assert!(
        message.starts_with("spec.env.DATABASE_URL: invalid DATABASE_URL (value not shown)"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    // Good values, blank values (the default) and names outside the contract pass.
    for spec in [
        "env: {SHUTDOWN_TIMEOUT: 1.5s, AUDIT_ENABLED: 'off', LOG_LEVEL: DEBUG}",
        "env: {SHUTDOWN_TIMEOUT: ''}",
        "env: {MY_OWN_FLAG: anything}",
        "redis: {external: {addr: 'redis.cache:6379', db: 3}}",
    ] {
        assert_eq!(env_values(&proxy(spec).spec), Ok(()), "{spec}");
    }
    // Reconciles refuse it as a spec problem: the Degraded condition and a Warning, no rollout.
    let error = llm_proxy_operator::llmproxy::validate::validate(
        &proxy("env: {SHUTDOWN_TIMEOUT: soon}"),
        Default::default(),
        &Default::default(),
    )
    .err()
    .expect("refused");
    assert_eq!(error.category(), "InvalidSpec");
}

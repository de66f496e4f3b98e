//! The real operator (`llm_proxy_operator::controller::run`, with the real kube-runtime Controller)
//! against the fake API server: every scenario awaits its condition with a timeout.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fake_kube_apiserver::{FaultRule, Verb};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use llm_proxy_operator::config::LeaderElection;
use llm_proxy_operator::crd::messages::POSTGRES_NEITHER;
use llm_proxy_operator::{LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME};
use serde_json::json;
use support::{Harness, NAMESPACE, config_hash, controller_owner_uid, is_true, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_builds_owned_children_and_ready_follows_deployment_availability() {
    let h = Harness::start().await;
    let _operator = h.start_operator(test_config());
    let proxy = h.create_proxy("demo", json!({})).await;
    let uid = proxy.uid().unwrap();

    h.wait_for("Deployment, Service and management Secret", |_| {
        h.exists("apps", "deployments", "demo")
            && h.exists("", "services", "demo")
            && h.exists("", "secrets", "demo-management")
    })
    .await;
    let deployment = h.deployment("demo").unwrap();
    assert_eq!(controller_owner_uid(&deployment), Some(uid.clone()));
    let labels = deployment.labels();
    assert_eq!(labels.get(LABEL_INSTANCE).map(String::as_str), Some("demo"));
    assert!(
        labels.contains_key(LABEL_NAME)
            && labels.contains_key(LABEL_COMPONENT)
            && labels.contains_key(LABEL_MANAGED_BY)
    );
    assert!(config_hash(&deployment).is_some_and(|hash| !hash.is_empty()));
    let service = h.server.get::<Service>(Some(NAMESPACE), "demo").unwrap();
    assert_eq!(controller_owner_uid(&service), Some(uid.clone()));
    let secret = h
        .server
        .get::<Secret>(Some(NAMESPACE), "demo-management")
        .unwrap();
    assert_eq!(controller_owner_uid(&secret), Some(uid));

    h.wait_for("a status with Ready=False before the rollout", |_| {
        h.condition("demo", "Ready")
            .is_some_and(|ready| ready.status == "False")
    })
    .await;
    let status = h.proxy("demo").unwrap().status.unwrap();
    assert_eq!(
        status.management_token_secret.as_deref(),
        Some("demo-management")
    );

    h.server
        .mark_deployment_available(NAMESPACE, "demo")
        .unwrap();
    h.wait_for("Ready=True after the Deployment became available", |_| {
        is_true(h.condition("demo", "Ready"))
    })
    .await;
    let ready = h.condition("demo", "Ready").unwrap();
    assert_eq!(ready.observed_generation, Some(1));
    assert!(is_true(h.condition("demo", "Available")));
    assert_eq!(
        h.proxy("demo").unwrap().status.unwrap().observed_generation,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_zero_writes() {
    let h = Harness::start().await;
    let _operator = h.start_operator(test_config());
    h.create_proxy("calm", json!({})).await;
    h.wait_for("the Deployment", |_| {
        h.exists("apps", "deployments", "calm")
    })
    .await;
    h.server
        .mark_deployment_available(NAMESPACE, "calm")
        .unwrap();
    h.wait_for("Ready=True", |_| is_true(h.condition("calm", "Ready")))
        .await;
    h.await_full_reconcile("calm").await;
    assert_eq!(
        h.deployment("calm").and_then(|d| d.metadata.generation),
        Some(1),
        "a new proxy's pods roll out once (a reconcile whose cache lags the generated Secret \
         must not draw another token and change the config hash)"
    );

    let mark = h.server.write_mark();
    let request_mark = h.server.request_mark();
    h.await_full_reconcile("calm").await;
    let operator_writes: Vec<_> = h
        .server
        .writes_since(mark)
        .into_iter()
        .filter(|write| !(write.kind == "LlmProxy" && write.subresource.is_none()))
        .collect();
    assert!(
        operator_writes.is_empty(),
        "steady-state reconciles wrote: {operator_writes:?}"
    );
    // Nothing changed: the reconciles answered every read from the controller's caches (no child,
    // Secret or list is read again; the watches stay open).
    let reads: Vec<_> = h
        .server
        .requests_since(request_mark)
        .into_iter()
        .filter(|request| matches!(request.verb, Verb::Get | Verb::List))
        .map(|request| format!("{} {}", request.verb, request.path))
        .collect();
    assert!(reads.is_empty(), "steady-state reconciles read: {reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edited_and_deleted_children_are_restored() {
    let h = Harness::start().await;
    let _operator = h.start_operator(test_config());
    h.create_proxy("drift", json!({"replicaCount": 1})).await;
    h.wait_for("children", |_| {
        h.exists("apps", "deployments", "drift") && h.exists("", "services", "drift")
    })
    .await;

    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), NAMESPACE);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    deployments
        .patch(
            "drift",
            &edit,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    h.wait_for("replicas restored to 1", |_| {
        h.deployment("drift")
            .and_then(|d| d.spec)
            .and_then(|spec| spec.replicas)
            == Some(1)
    })
    .await;

    let services: Api<Service> = Api::namespaced(h.client.clone(), NAMESPACE);
    let old_uid = services.get("drift").await.unwrap().uid();
    services
        .delete("drift", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_for("the Service recreated", |server| {
        server
            .get::<Service>(Some(NAMESPACE), "drift")
            .is_some_and(|service| service.uid() != old_uid)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_children_are_deleted_when_switched_off() {
    let h = Harness::start().await;
    let _operator = h.start_operator(test_config());
    h.create_proxy(
        "full",
        json!({
            "env": {"DB_DRIVER": "postgres", "LLM_PROXY_EVENT_BUS": "redis-streams"},
            "secrets": {"databaseUrl": {"existingSecret": {"name": "db", "key": "url"}}},
            "redis": {"external": {"addr": "redis:6379"}},
            "ingress": {"enabled": true},
            "autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 80},
            "dispatcher": {"enabled": true, "service": "file"},
        }),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NAMESPACE);
    let db = Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "url".to_owned(),
            ByteString(b"postgres://db".to_vec()),
        )])),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &db).await.unwrap();
    h.wait_for("ingress, HPA and dispatcher", |_| {
        h.exists("networking.k8s.io", "ingresses", "full")
            && h.exists("autoscaling", "horizontalpodautoscalers", "full")
            && h.exists("apps", "deployments", "full-dispatcher")
    })
    .await;
    let replicas = h
        .deployment("full")
        .and_then(|d| d.spec)
        .and_then(|spec| spec.replicas);
    assert_eq!(replicas, None, "replicas are left to the HPA");

    // The first attempt to delete it fails: the sweep is retried, not remembered as done.
    h.server.inject_fault(
        FaultRule::status(500)
            .verb(Verb::Delete)
            .resource("ingresses")
            .times(1),
    );
    h.patch_spec("full", json!({"ingress": {"enabled": false}}))
        .await;
    h.wait_for("the Ingress deleted", |_| {
        !h.exists("networking.k8s.io", "ingresses", "full")
    })
    .await;
    let deletes: Vec<u16> = h
        .server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Delete && r.resource == "ingresses")
        .map(|r| r.status)
        .collect();
    assert_eq!(deletes, [500, 200], "the failed sweep was retried");
    h.patch_spec("full", json!({"autoscaling": {"enabled": false}}))
        .await;
    h.wait_for("the HPA deleted and replicas set", |_| {
        !h.exists("autoscaling", "horizontalpodautoscalers", "full")
            && h.deployment("full")
                .and_then(|d| d.spec)
                .and_then(|spec| spec.replicas)
                .is_some()
    })
    .await;
    h.patch_spec("full", json!({"dispatcher": {"enabled": false}}))
        .await;
    h.wait_for("the dispatcher deleted", |_| {
        !h.exists("apps", "deployments", "full-dispatcher")
    })
    .await;
    assert!(
        h.exists("apps", "deployments", "full"),
        "the proxy itself stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_referenced_secret_changes_the_config_hash() {
    let h = Harness::start().await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NAMESPACE);
    let token = |value: &str| Secret {
        metadata: ObjectMeta {
            name: Some("mgmt".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "token".to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &token("first"))
        .await
        .unwrap();
    let _operator = h.start_operator(test_config());
    h.create_proxy("roll", json!({"secrets": {"managementToken": {"existingSecret": {"name": "mgmt", "key": "token"}}}})).await;
    h.wait_for("the Deployment", |_| {
        h.exists("apps", "deployments", "roll")
    })
    .await;
    let first = config_hash(&h.deployment("roll").unwrap()).unwrap();
    assert!(
        !h.exists("", "secrets", "roll-management"),
        "no token generated when one is referenced"
    );

    secrets
        .patch(
            "mgmt",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"token": "c2Vjb25k"}})),
        )
        .await
        .unwrap();
    h.wait_for("a new config hash in the pod template", |_| {
        h.deployment("roll")
            .and_then(|d| config_hash(&d))
            .is_some_and(|hash| hash != first)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_degrades_with_the_chart_message_and_recovers_when_fixed() {
    let h = Harness::start().await;
    let operator = h.start_operator(test_config());
    h.create_proxy("bad", json!({"env": {"DB_DRIVER": "postgres"}}))
        .await;
    h.wait_for("Degraded=True", |_| is_true(h.condition("bad", "Degraded")))
        .await;
    assert_eq!(
        h.condition("bad", "Degraded").unwrap().message,
        POSTGRES_NEITHER
    );
    h.wait_for("a Warning Event with the message", |server| {
        server.list::<Event>().iter().any(|event| {
            event.type_.as_deref() == Some("Warning")
                && event.note.as_deref() == Some(POSTGRES_NEITHER)
        })
    })
    .await;
    assert!(
        !h.exists("apps", "deployments", "bad"),
        "nothing is rolled out from an invalid spec"
    );
    assert!(operator.is_running());

    h.patch_spec("bad", json!({"env": {"DB_DRIVER": "sqlite"}}))
        .await;
    h.wait_for("Degraded cleared and the Deployment created", |_| {
        h.exists("apps", "deployments", "bad")
            && h.condition("bad", "Degraded")
                .is_some_and(|d| d.status == "False")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_and_dropped_watches_are_recovered_from() {
    let h = Harness::start().await;
    let operator = h.start_operator(test_config());
    h.server.inject_fault(
        FaultRule::status(500)
            .verb(Verb::Patch)
            .resource("deployments")
            .times(2),
    );
    h.server.inject_fault(
        FaultRule::status(409)
            .verb(Verb::Patch)
            .resource("services"),
    );
    h.server.inject_fault(
        FaultRule::status(429)
            .verb(Verb::Get)
            .resource("deployments")
            .times(2),
    );
    h.create_proxy("flaky", json!({})).await;
    h.wait_for("children despite the faults", |_| {
        h.exists("apps", "deployments", "flaky") && h.exists("", "services", "flaky")
    })
    .await;
    let failed: Vec<u16> = h
        .server
        .requests()
        .iter()
        .map(|r| r.status)
        .filter(|s| *s >= 400 && *s != 404)
        .collect();
    assert!(
        failed.contains(&500) && failed.contains(&409),
        "faults were hit: {failed:?}"
    );

    h.server.drop_watches();
    h.create_proxy("after-drop", json!({})).await;
    h.wait_for(
        "a proxy created after the watches dropped is reconciled",
        |_| h.exists("apps", "deployments", "after-drop"),
    )
    .await;
    assert!(operator.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_proxy_gets_status_but_no_child_writes() {
    let h = Harness::start().await;
    let _operator = h.start_operator(test_config());
    let mark = h.server.write_mark();
    h.create_proxy("paused", json!({"suspend": true})).await;
    h.wait_for("a status for the suspended proxy", |_| {
        h.condition("paused", "Ready").is_some()
    })
    .await;
    h.await_full_reconcile("paused").await;
    let child_writes: Vec<_> = h
        .server
        .writes_since(mark)
        .into_iter()
        .filter(|write| write.kind != "LlmProxy" && write.kind != "Event")
        .collect();
    assert!(
        child_writes.is_empty(),
        "suspended proxy wrote children: {child_writes:?}"
    );
    let ready = h.condition("paused", "Ready").unwrap();
    assert_eq!(ready.reason, "Suspended");

    h.patch_spec("paused", json!({"suspend": false})).await;
    h.wait_for("children once resumed", |_| {
        h.exists("apps", "deployments", "paused")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_waits_for_a_missing_crd_and_then_works() {
    let h = Harness::without_crd().await;
    let operator = h.start_operator(test_config());
    h.wait_for("the operator to probe for LlmProxy", |server| {
        server
            .requests()
            .iter()
            .any(|r| r.resource == "llmproxies" && r.status == 404)
    })
    .await;
    assert!(operator.is_running());
    h.install_crd().await;
    h.create_proxy("late", json!({})).await;
    assert!(
        h.server
            .wait_until(Duration::from_secs(40), |server| server
                .get_dynamic("apps", "deployments", Some(NAMESPACE), "late")
                .is_some())
            .await,
        "the operator started working after the CRD appeared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_monitor_waits_for_its_crd() {
    let h = Harness::start().await;
    // The discovery's answer is what the reconciles use: ask it often.
    let config = llm_proxy_operator::config::OperatorConfig {
        discovery_interval: Duration::from_millis(200),
        ..test_config()
    };
    let _operator = h.start_operator(config);
    h.create_monitored_proxy_without_its_crd("monitored").await;
    assert!(
        h.exists("apps", "deployments", "monitored"),
        "the rest is rolled out"
    );

    h.install_service_monitor_crd().await;
    h.wait_for("the ServiceMonitor created", |_| {
        h.exists("monitoring.coreos.com", "servicemonitors", "monitored")
    })
    .await;
    h.wait_for("the ServiceMonitor condition cleared", |_| {
        h.condition("monitored", "ServiceMonitor")
            .is_none_or(|c| c.status == "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_monitor_crd_installed_later_is_noticed_before_the_resync() {
    let h = Harness::start().await;
    let config = llm_proxy_operator::config::OperatorConfig {
        resync_interval: Duration::from_secs(3600),
        discovery_interval: Duration::from_millis(200),
        ..test_config()
    };
    let _operator = h.start_operator(config);
    h.create_monitored_proxy_without_its_crd("late-crd").await;

    h.install_service_monitor_crd().await;
    h.wait_for(
        "the ServiceMonitor created without a resync or a change of the LlmProxy",
        |_| h.exists("monitoring.coreos.com", "servicemonitors", "late-crd"),
    )
    .await;
}

fn election(identity: &str) -> LeaderElection {
    LeaderElection {
        namespace: NAMESPACE.to_owned(),
        lease_name: "llm-proxy-operator".to_owned(),
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(3),
        renew_interval: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_standby_when_the_leader_stops() {
    let h = Harness::start().await;
    let holder = |server: &fake_kube_apiserver::FakeApiServer| {
        server
            .get::<Lease>(Some(NAMESPACE), "llm-proxy-operator")
            .and_then(|lease| lease.spec)
            .and_then(|spec| spec.holder_identity)
    };
    let first = h.start_operator(llm_proxy_operator::config::OperatorConfig {
        leader_election: Some(election("first")),
        ..test_config()
    });
    h.wait_for("the first instance to lead", |server| {
        holder(server).as_deref() == Some("first")
    })
    .await;
    let second = h.start_operator(llm_proxy_operator::config::OperatorConfig {
        leader_election: Some(election("second")),
        ..test_config()
    });

    h.create_proxy("led", json!({})).await;
    h.wait_for("the leader reconciles", |_| {
        h.exists("apps", "deployments", "led")
    })
    .await;
    let before = h.server.request_count(Verb::Get, "leases");
    h.wait_for("the standby to try the lease", |server| {
        server.request_count(Verb::Get, "leases") >= before + 2
    })
    .await;
    assert_eq!(
        holder(&h.server).as_deref(),
        Some("first"),
        "the standby does not take a held lease"
    );

    let reporters = |server: &fake_kube_apiserver::FakeApiServer| -> Vec<String> {
        server
            .list::<Event>()
            .into_iter()
            .filter_map(|event| event.reporting_instance)
            .collect()
    };
    let before_handover = reporters(&h.server);
    assert!(!before_handover.is_empty());
    assert!(
        before_handover.iter().all(|instance| instance == "first"),
        "only the leader writes: {before_handover:?}"
    );

    first.stop().await.unwrap();
    h.wait_for("the standby to take over", |server| {
        holder(server).as_deref() == Some("second")
    })
    .await;
    h.create_proxy("after-handover", json!({})).await;
    h.wait_for("the new leader reconciles", |_| {
        h.exists("apps", "deployments", "after-handover")
    })
    .await;
    second.stop().await.unwrap();
}

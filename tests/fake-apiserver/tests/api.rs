//! The fake API server driven through `kube::Api`, `watcher` and `Controller`, as the operator uses it.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap fixture construction

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_kube_apiserver::{FakeApiServer, FaultRule, Verb};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn api_error_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn api_error_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.reason.clone(),
        other => other.to_string(),
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}},
        },
        "status": {"replicas": 99},
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_round_trip_with_status_errors() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");

    let created = api
        .create(&PostParams::default(), &config_map("a", &[("k", "1")]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let first_version: u64 = created.resource_version().unwrap().parse().unwrap();

    let duplicate = api
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        (
            api_error_code(&duplicate),
            api_error_reason(&duplicate).as_str()
        ),
        (Some(409), "AlreadyExists")
    );

    let mut replaced = api.get("a").await.unwrap();
    replaced.data = Some(BTreeMap::from([("k".to_owned(), "2".to_owned())]));
    let replaced = api
        .replace("a", &PostParams::default(), &replaced)
        .await
        .unwrap();
    let second_version: u64 = replaced.resource_version().unwrap().parse().unwrap();
    assert!(second_version > first_version);
    assert_eq!(replaced.metadata.uid, created.metadata.uid);

    // A replace carrying the first resourceVersion is stale.
    let stale = api
        .replace("a", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(
        (api_error_code(&stale), api_error_reason(&stale).as_str()),
        (Some(409), "Conflict")
    );

    let invalid = api
        .create(&PostParams::default(), &config_map("Not_Valid", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        (
            api_error_code(&invalid),
            api_error_reason(&invalid).as_str()
        ),
        (Some(422), "Invalid")
    );

    let missing_namespace: Api<ConfigMap> = Api::namespaced(server.client(), "nowhere");
    let error = missing_namespace
        .create(&PostParams::default(), &config_map("x", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&error), Some(404));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let gone = api.get("a").await.unwrap_err();
    assert_eq!(
        (api_error_code(&gone), api_error_reason(&gone).as_str()),
        (Some(404), "NotFound")
    );
    let error = api.delete("a", &DeleteParams::default()).await.unwrap_err();
    assert_eq!(api_error_code(&error), Some(404));
}

#[tokio::test]
async fn merge_and_json_patches_apply() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(
        &PostParams::default(),
        &config_map("p", &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();

    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
    );

    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/data/b", "value": "20"}]))
            .unwrap();
    let patched = api
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .unwrap();
    assert_eq!(
        patched.data.unwrap().get("b").map(String::as_str),
        Some("20")
    );

    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/data/missing"}])).unwrap();
    let error = api
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(bad))
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&error), Some(422));

    let error = api
        .patch("absent", &PatchParams::default(), &Patch::Merge(json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&error), Some(404));
}

#[tokio::test]
async fn server_side_apply_upserts_tracks_owners_and_conflicts() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let apply = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": data});

    let created = api
        .patch(
            "s",
            &PatchParams::apply("owner-a"),
            &Patch::Apply(apply(json!({"x": "1", "y": "1"}))),
        )
        .await
        .unwrap();
    let managers: Vec<String> = created
        .managed_fields()
        .iter()
        .filter_map(|entry| entry.manager.clone())
        .collect();
    assert_eq!(managers, vec!["owner-a".to_owned()]);

    // Re-applying the same content changes nothing: no new resourceVersion, write logged as no-op.
    let mark = server.write_mark();
    let again = api
        .patch(
            "s",
            &PatchParams::apply("owner-a"),
            &Patch::Apply(apply(json!({"x": "1", "y": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(again.resource_version(), created.resource_version());
    let writes = server.writes_since(mark);
    assert_eq!(writes.len(), 1);
    assert!(!writes[0].changed);

    // Another manager changing an owned field conflicts unless it forces.
    let conflict = api
        .patch(
            "s",
            &PatchParams::apply("owner-b"),
            &Patch::Apply(apply(json!({"x": "2"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (
            api_error_code(&conflict),
            api_error_reason(&conflict).as_str()
        ),
        (Some(409), "Conflict")
    );
    assert!(conflict.to_string().contains("owner-a"));
    // Setting the same value is shared ownership, not a conflict.
    api.patch(
        "s",
        &PatchParams::apply("owner-b"),
        &Patch::Apply(apply(json!({"y": "1"}))),
    )
    .await
    .unwrap();
    let forced = api
        .patch(
            "s",
            &PatchParams::apply("owner-b").force(),
            &Patch::Apply(apply(json!({"x": "2", "y": "1"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        forced
            .data
            .as_ref()
            .and_then(|data| data.get("x"))
            .map(String::as_str),
        Some("2")
    );

    // owner-a stops applying x (now owned by owner-b: kept) and adds z; y stays shared.
    let after = api
        .patch(
            "s",
            &PatchParams::apply("owner-a"),
            &Patch::Apply(apply(json!({"y": "1", "z": "3"}))),
        )
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.get("x").map(String::as_str), Some("2"));
    // owner-b drops everything: x (only its own) goes away, y (shared with owner-a) stays.
    let dropped = api
        .patch(
            "s",
            &PatchParams::apply("owner-b"),
            &Patch::Apply(apply(json!({}))),
        )
        .await
        .unwrap();
    let data = dropped.data.unwrap();
    assert!(!data.contains_key("x"));
    assert_eq!(data.get("y").map(String::as_str), Some("1"));

    // A hand edit (merge patch) takes over the field, so the applier conflicts on it.
    api.patch(
        "s",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"z": "hand"}})),
    )
    .await
    .unwrap();
    let error = api
        .patch(
            "s",
            &PatchParams::apply("owner-a"),
            &Patch::Apply(apply(json!({"y": "1", "z": "3"}))),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("kubectl-edit"), "{error}");

    // Apply without a field manager is rejected.
    let error = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Apply(apply(json!({}))),
        )
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&error), Some(422));
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_across_namespaces() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("team".into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .unwrap();
    for (namespace, name, tier) in [
        ("default", "a", "web"),
        ("default", "b", "db"),
        ("team", "c", "web"),
        ("team", "d", ""),
    ] {
        let mut map = config_map(name, &[]);
        if !tier.is_empty() {
            map.metadata.labels = Some(BTreeMap::from([("tier".to_owned(), tier.to_owned())]));
        }
        Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &map)
            .await
            .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    };

    assert_eq!(
        names(
            all.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("tier in (web,db),tier!=db"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        ),
        ["d"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let listed = team.list(&ListParams::default()).await.unwrap();
    assert!(listed.metadata.resource_version.is_some());
    assert_eq!(names(listed), ["c", "d"]);

    let error = all
        .list(&ListParams::default().fields("spec.nodeName=x"))
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&error), Some(400));

    let metadata_only = all
        .list_metadata(&ListParams::default().labels("tier=db"))
        .await
        .unwrap();
    assert_eq!(metadata_only.items.len(), 1);
}

#[tokio::test]
async fn status_is_separate_and_generation_tracks_spec_changes() {
    let server = FakeApiServer::start().await;
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let created = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    assert!(created.status.is_none(), "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1}, "spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.and_then(|status| status.replicas), Some(1));
    assert_eq!(
        status.spec.and_then(|spec| spec.replicas),
        Some(1),
        "spec ignored on /status"
    );
    assert_eq!(
        status.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );

    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}, "status": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata-only changes keep the generation"
    );
    assert_eq!(
        labelled.status.and_then(|status| status.replicas),
        Some(1),
        "status ignored on the main resource"
    );

    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));

    server.mark_deployment_available("default", "web").unwrap();
    let available = server.get::<Deployment>(Some("default"), "web").unwrap();
    let status = available.status.unwrap();
    assert_eq!(
        (
            status.available_replicas,
            status.ready_replicas,
            status.observed_generation
        ),
        (Some(3), Some(3), Some(2))
    );
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
}

#[tokio::test]
async fn deleting_an_owner_cascades_to_dependents_unless_orphaned() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let owner_ref = |owner: &ConfigMap| OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap(),
        controller: Some(true),
        ..OwnerReference::default()
    };
    let create_owned = |name: &str, owner: &ConfigMap| {
        let mut child = config_map(name, &[]);
        child.metadata.owner_references = Some(vec![owner_ref(owner)]);
        child
    };
    let root = api
        .create(&PostParams::default(), &config_map("root", &[]))
        .await
        .unwrap();
    let child = api
        .create(&PostParams::default(), &create_owned("child", &root))
        .await
        .unwrap();
    api.create(&PostParams::default(), &create_owned("grandchild", &child))
        .await
        .unwrap();
    let other = api
        .create(&PostParams::default(), &config_map("other", &[]))
        .await
        .unwrap();
    let mut shared = create_owned("shared", &root);
    shared
        .metadata
        .owner_references
        .as_mut()
        .unwrap()
        .push(owner_ref(&other));
    api.create(&PostParams::default(), &shared).await.unwrap();

    api.delete("root", &DeleteParams::default()).await.unwrap();
    let left: Vec<String> = server
        .list::<ConfigMap>()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        left,
        ["other", "shared"],
        "a dependent with a live owner stays"
    );

    let keeper = api
        .create(&PostParams::default(), &config_map("keeper", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &create_owned("kept", &keeper))
        .await
        .unwrap();
    api.delete(
        "keeper",
        &DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(server.get::<ConfigMap>(Some("default"), "kept").is_some());
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd"
)]
struct WidgetSpec {
    size: i32,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema)]
struct WidgetStatus {
    ready: bool,
}

#[tokio::test]
async fn crds_register_and_unregister_kinds_and_discovery_follows() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let error = widgets.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_error_code(&error), Some(404));

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let established = kube::runtime::wait::await_condition(
        crds.clone(),
        "widgets.example.io",
        kube::runtime::conditions::is_crd_established(),
    );
    tokio::time::timeout(WAIT, established)
        .await
        .unwrap()
        .unwrap();

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery
        .get("example.io")
        .expect("the CRD's group is discoverable");
    let (resource, capabilities) = group.recommended_kind("Widget").unwrap();
    assert_eq!(resource.plural, "widgets");
    assert!(
        capabilities
            .subresources
            .iter()
            .any(|(sub, _)| sub.plural == "widgets/status" || sub.plural == "status")
    );
    assert!(discovery.get("apps").is_some());

    let created = widgets
        .create(
            &PostParams::default(),
            &Widget::new("w", WidgetSpec { size: 1 }),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let with_status = widgets
        .patch_status(
            "w",
            &PatchParams::apply("test").force(),
            &Patch::Apply(
                json!({"apiVersion": "example.io/v1", "kind": "Widget", "status": {"ready": true}}),
            ),
        )
        .await
        .unwrap();
    assert!(with_status.status.unwrap().ready);
    assert_eq!(with_status.metadata.generation, Some(1));

    crds.delete("widgets.example.io", &DeleteParams::default())
        .await
        .unwrap();
    assert!(!server.is_served("example.io", "v1", "widgets"));
    let error = widgets.get("w").await.unwrap_err();
    assert_eq!(api_error_code(&error), Some(404));
    assert!(server.list_dynamic("example.io", "widgets").is_empty());
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted_and_survives_dropped_watches() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &config_map("before", &[]))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default().labels("!ignored")).boxed();

    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert!(matches!(next().await, watcher::Event::Init));
    assert!(matches!(next().await, watcher::Event::InitApply(map) if map.name_any() == "before"));
    assert!(matches!(next().await, watcher::Event::InitDone));

    api.create(&PostParams::default(), &config_map("live", &[("v", "1")]))
        .await
        .unwrap();
    assert!(matches!(next().await, watcher::Event::Apply(map) if map.name_any() == "live"));
    assert_eq!(server.open_watches(), 1);
    api.patch(
        "live",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    assert!(
        matches!(next().await, watcher::Event::Apply(map) if map.data.as_ref().and_then(|data| data.get("v")).map(String::as_str) == Some("2"))
    );
    api.delete("live", &DeleteParams::default()).await.unwrap();
    assert!(matches!(next().await, watcher::Event::Delete(map) if map.name_any() == "live"));
    // Leaving the selector is a deletion for this watcher.
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"ignored": "yes"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(next().await, watcher::Event::Delete(map) if map.name_any() == "before"));

    server.drop_watches();
    api.create(&PostParams::default(), &config_map("after-drop", &[]))
        .await
        .unwrap();
    // The watcher re-watches from its last resourceVersion and gets the change it missed.
    assert!(matches!(next().await, watcher::Event::Apply(map) if map.name_any() == "after-drop"));
    assert!(server.request_count(Verb::Watch, "configmaps") >= 2);
}

#[tokio::test]
async fn raw_watch_replays_after_a_resource_version_and_honours_timeout() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let first = api
        .create(&PostParams::default(), &config_map("one", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("two", &[]))
        .await
        .unwrap();
    api.delete("one", &DeleteParams::default()).await.unwrap();

    let params = WatchParams::default().timeout(1).disable_bookmarks();
    let stream = api
        .watch(&params, &first.resource_version().unwrap())
        .await
        .unwrap();
    // The stream ends by itself after timeoutSeconds.
    let events: Vec<_> = tokio::time::timeout(WAIT, stream.try_collect::<Vec<_>>())
        .await
        .unwrap()
        .unwrap();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|event| match event {
            WatchEvent::Added(map) => ("ADDED".to_owned(), map.name_any()),
            WatchEvent::Modified(map) => ("MODIFIED".to_owned(), map.name_any()),
            WatchEvent::Deleted(map) => ("DELETED".to_owned(), map.name_any()),
            other => (format!("{other:?}"), String::new()),
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ADDED".to_owned(), "two".to_owned()),
            ("DELETED".to_owned(), "one".to_owned())
        ]
    );

    let bookmarked = api
        .watch(
            &WatchParams::default().timeout(1),
            &first.resource_version().unwrap(),
        )
        .await
        .unwrap();
    let events: Vec<_> = tokio::time::timeout(WAIT, bookmarked.try_collect::<Vec<_>>())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(events.last(), Some(WatchEvent::Bookmark(_))));
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

async fn reconcile_parent(
    parent: Arc<ConfigMap>,
    client: Arc<Client>,
) -> Result<Action, ReconcileError> {
    let namespace = parent.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced((*client).clone(), &namespace);
    let owner = parent.controller_owner_ref(&()).map(|owner| vec![owner]);
    let child = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{}-child", parent.name_any()), "labels": {"role": "child"}, "ownerReferences": owner},
        "data": parent.data.clone().unwrap_or_default(),
    });
    api.patch(
        &format!("{}-child", parent.name_any()),
        &PatchParams::apply("test-controller").force(),
        &Patch::Apply(child),
    )
    .await?;
    Ok(Action::await_change())
}

#[tokio::test]
async fn a_controller_owning_a_child_reconciles_end_to_end() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let parents: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let controller = Controller::new(
        parents.clone(),
        watcher::Config::default().labels("role=parent"),
    )
    .owns(
        parents.clone(),
        watcher::Config::default().labels("role=child"),
    )
    .run(
        reconcile_parent,
        |_, _, _| Action::requeue(Duration::from_millis(100)),
        Arc::new(client.clone()),
    )
    .for_each(|_| async {});
    let running = tokio::spawn(controller);

    let mut parent = config_map("p", &[("k", "v1")]);
    parent.metadata.labels = Some(BTreeMap::from([("role".to_owned(), "parent".to_owned())]));
    parents
        .create(&PostParams::default(), &parent)
        .await
        .unwrap();
    let child_has = |value: &'static str| {
        move |server: &FakeApiServer| {
            server
                .get::<ConfigMap>(Some("default"), "p-child")
                .and_then(|child| child.data)
                .is_some_and(|data| data.get("k").map(String::as_str) == Some(value))
        }
    };
    assert!(
        server.wait_until(WAIT, child_has("v1")).await,
        "child created"
    );

    parents
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v2"}})),
        )
        .await
        .unwrap();
    assert!(
        server.wait_until(WAIT, child_has("v2")).await,
        "child follows the parent"
    );

    // A deleted child is recreated through the owns() watch.
    parents
        .delete("p-child", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        server.wait_until(WAIT, child_has("v2")).await,
        "child recreated"
    );

    // A failing apply is retried by the error policy.
    server.inject_fault(
        FaultRule::status(500)
            .verb(Verb::Patch)
            .resource("configmaps")
            .times(2),
    );
    parents
        .delete("p-child", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        server.wait_until(WAIT, child_has("v2")).await,
        "recovered after faults"
    );
    let failed_patches = server
        .requests()
        .iter()
        .filter(|request| request.verb == Verb::Patch && request.status == 500)
        .count();
    assert_eq!(failed_patches, 2);

    parents.delete("p", &DeleteParams::default()).await.unwrap();
    assert!(
        server
            .get::<ConfigMap>(Some("default"), "p-child")
            .is_none(),
        "garbage collected with its owner"
    );
    running.abort();
}

#[tokio::test]
async fn injected_faults_answer_with_kubernetes_statuses_then_clear() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &config_map("f", &[]))
        .await
        .unwrap();
    server.inject_fault(
        FaultRule::status(409)
            .verb(Verb::Get)
            .resource("configmaps"),
    );
    server.inject_fault(FaultRule::status(500).verb(Verb::Get));
    server.inject_fault(FaultRule::status(500).resource("secrets").times(3));

    let error = api.get("f").await.unwrap_err();
    assert_eq!(
        (api_error_code(&error), api_error_reason(&error).as_str()),
        (Some(409), "Conflict")
    );
    let error = api.get("f").await.unwrap_err();
    assert_eq!(
        (api_error_code(&error), api_error_reason(&error).as_str()),
        (Some(500), "InternalError")
    );
    api.get("f").await.unwrap();

    // kube's client retries 429 (honouring Retry-After) by itself: the caller sees success.
    server.inject_fault(
        FaultRule::status(429)
            .verb(Verb::Get)
            .resource("configmaps"),
    );
    api.get("f").await.unwrap();
    let throttled = server
        .requests()
        .iter()
        .filter(|request| request.status == 429)
        .count();
    assert_eq!(throttled, 1);
    // The secrets rule does not match configmaps and can be cleared.
    server.clear_faults();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::default_namespaced(server.client());
    assert!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn kubeconfig_points_a_client_at_the_server() {
    let server = FakeApiServer::start().await;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    let names: Vec<String> = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["default", "kube-system"]);
    let version = server.client().apiserver_version().await.unwrap();
    assert_eq!(version.minor, "33");
}

#[tokio::test]
async fn unknown_resources_are_not_found() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let request = http::Request::get("/apis/nope.io/v1/things")
        .body(Vec::new())
        .unwrap();
    let error = client
        .request::<serde_json::Value>(request)
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&error), Some(404));
    let _ = Deployment::kind(&());
}

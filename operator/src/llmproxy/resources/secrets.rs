//! Operator-owned Secrets: `<name>-config` (the spec's plaintext values, so they never appear as env
//! literals) and the generated `<name>-management` token (created once, never rewritten).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{COMPONENT_CONFIG, COMPONENT_MANAGEMENT_TOKEN};
use crate::llmproxy::sources::{
    CONFIG_POSTGRES_PASSWORD_KEY, DISPATCHER_API_KEY_DEFAULT_KEY, Origin, config_secret_name,
    management_secret_name,
};
use crate::llmproxy::validate::ValidatedProxy;
use crate::vocabulary::GENERATED_ANNOTATION;

/// Bytes of entropy of a generated management token (the upstream security guide's 32).
pub const GENERATED_TOKEN_BYTES: usize = 32;

/// Plaintext values of the spec that the pods read, by key of `<name>-config`.
pub fn config_secret_data(ctx: &ValidatedProxy<'_>) -> BTreeMap<String, Vec<u8>> {
    let spec = &ctx.spec;
    let mut data = BTreeMap::new();
    for source in ctx.sources.all().filter(|s| s.origin == Origin::Config) {
        let value = if source.key == llm_proxy_env::MANAGEMENT_TOKEN {
            &spec.secrets.data.management_token
        } else if source.key == llm_proxy_env::DATABASE_URL {
            &spec.secrets.data.database_url
        } else if source.key == llm_proxy_env::ENCRYPTION_KEY {
            &spec.secrets.data.encryption_key
        } else if source.key == DISPATCHER_API_KEY_DEFAULT_KEY {
            &spec.dispatcher.api_key.value
        } else if source.key == CONFIG_POSTGRES_PASSWORD_KEY {
            &spec.postgresql.auth.password
        } else {
            continue;
        };
        data.insert(source.key.clone(), value.as_bytes().to_vec());
    }
    data
}

/// `<name>-config`, when the spec holds any plaintext value the pods use.
pub fn config_secret(ctx: &ValidatedProxy<'_>) -> Option<Secret> {
    let data = config_secret_data(ctx);
    (!data.is_empty()).then(|| Secret {
        metadata: ctx.metadata(config_secret_name(&ctx.name), COMPONENT_CONFIG),
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    })
}

/// A new random management token: base64 of [`GENERATED_TOKEN_BYTES`] random bytes.
pub fn new_management_token() -> Vec<u8> {
    use base64::Engine as _;
    let mut bytes = [0u8; GENERATED_TOKEN_BYTES];
    rand::fill(&mut bytes[..]);
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into_bytes()
}

/// The `<name>-management` Secret to create when it does not exist yet, holding the token
/// [`dereference`](crate::llmproxy::dereference) drew for it; `None` when it exists or the spec
/// names another source.
pub fn generated_management_secret(ctx: &ValidatedProxy<'_>) -> Option<Secret> {
    let source = &ctx.sources.management_token;
    if source.origin != Origin::Generated {
        return None;
    }
    let token = ctx.referenced.drawn_management_token.as_ref()?.0.clone();
    let mut metadata = ctx.metadata(
        management_secret_name(&ctx.name),
        COMPONENT_MANAGEMENT_TOKEN,
    );
    metadata.annotations = Some(BTreeMap::from([(
        GENERATED_ANNOTATION.to_owned(),
        "true".to_owned(),
    )]));
    Some(Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(source.key.clone(), ByteString(token))])),
        ..Secret::default()
    })
}

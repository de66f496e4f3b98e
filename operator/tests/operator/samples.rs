use llm_proxy_operator::config::OperatorConfig;
use llm_proxy_operator::llmproxy::dereference::ReferencedData;
use llm_proxy_operator::llmproxy::validate::chart_rules as validate;
use llm_proxy_operator::llmproxy::{render, to_multi_doc_yaml};

use crate::support::{cel_errors, samples};

#[test]
fn every_sample_passes_validate_and_cel() {
    let samples = samples();
    assert!(samples.len() >= 11, "one sample per seed scenario");
    for (name, raw, proxy) in samples {
        assert_eq!(validate(&proxy.spec), Ok(()), "{name}");
        assert_eq!(cel_errors(&raw), Vec::<String>::new(), "{name}");
    }
}

/// Golden files: `UPDATE_GOLDEN=1 cargo nextest run -p llm-proxy-operator` rewrites them.
#[test]
fn every_sample_renders_its_golden_yaml() {
    let golden_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, _, proxy) in samples() {
        let objects = render(
            &proxy,
            &ReferencedData::offline(),
            &OperatorConfig::default(),
        )
        .expect("render");
        let yaml = to_multi_doc_yaml(&objects).expect("YAML");
        let path = golden_dir.join(format!("{name}.yaml"));
        if update {
            std::fs::write(&path, &yaml).expect("write golden");
        }
        let expected =
            std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display()));
        assert!(
            yaml == expected,
            "{name}: rendered objects differ from {} (UPDATE_GOLDEN=1 to accept)",
            path.display()
        );
    }
}

#[test]
fn rendering_twice_gives_identical_output() {
    for (name, _, proxy) in samples() {
        let config = OperatorConfig::default();
        let first = render(&proxy, &ReferencedData::offline(), &config).expect("render");
        let second = render(&proxy, &ReferencedData::offline(), &config).expect("render");
        assert_eq!(first, second, "{name}");
    }
}

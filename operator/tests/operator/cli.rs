use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_llm-proxy-operator");

#[test]
fn render_prints_the_objects_of_a_sample() {
    let sample = crate::support::samples_dir().join("ingress.yaml");
    let output = Command::new(BIN)
        .args(["render", "-f"])
        .arg(&sample)
        .output()
        .expect("run render");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("---\n").count(), 3, "{stdout}");
    assert!(stdout.contains("kind: Ingress"));
}

#[test]
fn render_of_an_invalid_spec_prints_the_charts_message_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("llmp-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("bad.yaml");
    std::fs::write(&file, "apiVersion: llm-proxy.io/v1alpha1\nkind: LlmProxy\nmetadata: {name: x}\nspec: {env: {DB_DRIVER: postgres}}\n")
        .expect("write");
    let output = Command::new(BIN)
        .args(["render", "-f"])
        .arg(&file)
        .output()
        .expect("run render");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("Configuration error: DB_DRIVER is set to 'postgres' but no database configuration found."), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crd_command_prints_the_committed_crd() {
    let output = Command::new(BIN).arg("crd").output().expect("run crd");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        include_str!("../../../crds/llmproxies.llm-proxy.io.yaml")
    );
}

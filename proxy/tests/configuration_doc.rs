//! `docs/configuration.md` lists every variable of `llm-proxy-env` with its default: this test fails
//! when the table is stale. Regenerate it with `UPDATE_DOCS=1 cargo nextest run -p llm-proxy
//! --test configuration_doc`.

use llm_proxy_env::{ALL, Scope};

const BEGIN: &str = "<!-- BEGIN GENERATED: variables (proxy/tests/configuration_doc.rs) -->";
const END: &str = "<!-- END GENERATED: variables -->";

fn table() -> String {
    let mut out = String::from(
        "| Variable | Default | Syntax | Read by | Secret | Meaning |\n|---|---|---|---|---|---|\n",
    );
    for var in ALL {
        let default = if var.default.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", var.default)
        };
        let scope = match var.scope {
            Scope::Server => "server",
            Scope::Dispatcher => "dispatcher",
            Scope::Both => "server, dispatcher",
        };
        let secret = if var.secret { "yes" } else { "" };
        out.push_str(&format!(
            "| `{}` | {default} | {} | {scope} | {secret} | {} |\n",
            var.name,
            var.syntax.describe(),
            var.help.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn the_variable_table_matches_the_contract() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (before, rest) = doc.split_once(BEGIN).expect("begin marker");
    let (current, after) = rest.split_once(END).expect("end marker");
    let expected = format!("\n{}", table());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{before}{BEGIN}{expected}{END}{after}")).unwrap();
        return;
    }
    assert_eq!(
        current, expected,
        "docs/configuration.md is stale: rerun with UPDATE_DOCS=1"
    );
}

//! Every YAML example in the README is a configuration zferry accepts: the
//! documentation cannot drift from the parser.

use zferry_core::config::Config;
use zferry_core::job::build_jobs;

#[test]
fn readme_yaml_examples_build() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + "```yaml\n".len()..];
        let end = body.find("```").expect("a closed yaml block");
        let yaml = &body[..end];
        let config = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        build_jobs(&config).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        blocks += 1;
        rest = &body[end..];
    }
    assert!(blocks >= 2, "the README's configuration examples were not found");
}

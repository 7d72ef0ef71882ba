//! Which modules may run at all: the station's allow-list.
//!
//! A data station must know exactly which code runs on its data. Each rule
//! names a repository (exactly, or every repository under a prefix with a
//! trailing `/*`) and, optionally, the only digests allowed from it. A
//! module runs only if some rule allows it; with no allow-list configured,
//! every module may run. The check needs only the reference and the digests
//! the registry reported, so a refused module is never downloaded, let alone
//! executed.

use serde::Deserialize;

use sandlet_core::Digest;

/// One allow-list rule, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `registry/path/name`, or `registry/path/*` for every repository
    /// under `registry/path/`.
    pub repository: String,
    /// If given, only these digests (of the manifest or of the module
    /// layer) may run from the repository.
    #[serde(default)]
    pub digests: Option<Vec<String>>,
}

/// The allow-list. `None` rules: no list configured, everything may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Option<Vec<ValidRule>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ValidRule {
    repository: RepositoryPattern,
    digests: Option<Vec<Digest>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RepositoryPattern {
    Exact(String),
    Under(String),
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    #[error("allow-list rule {repository:?}: {reason}")]
    Rule { repository: String, reason: String },
}

/// A module the allow-list refuses; `Display` is the reason on the pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module {reference} is not allowed on this station: {reason}")]
pub struct NotAllowed {
    pub reference: String,
    pub reason: String,
}

impl AllowList {
    /// Every module may run.
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Validates `rules` (an empty list allows nothing).
    pub fn new(rules: Vec<AllowRule>) -> Result<Self, AllowListError> {
        let mut valid = Vec::with_capacity(rules.len());
        for rule in rules {
            let bad = |reason: &str| AllowListError::Rule {
                repository: rule.repository.clone(),
                reason: reason.to_owned(),
            };
            let repository = match rule.repository.strip_suffix("/*") {
                Some(prefix) if !prefix.is_empty() && !prefix.contains('*') => {
                    RepositoryPattern::Under(format!("{prefix}/"))
                }
                Some(_) => return Err(bad("a pattern is a repository path followed by /*")),
                None if rule.repository.contains('*') => {
                    return Err(bad("* is allowed only as the last path segment (path/*)"));
                }
                None if !rule.repository.contains('/') => {
                    return Err(bad(
                        "name the registry and the repository, e.g. registry.example.org/algorithms/mean",
                    ));
                }
                None => RepositoryPattern::Exact(rule.repository.clone()),
            };
            let digests = match rule.digests {
                None => None,
                Some(digests) => Some(
                    digests
                        .iter()
                        .map(|d| d.parse::<Digest>().map_err(|e| bad(&e.to_string())))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            valid.push(ValidRule {
                repository,
                digests,
            });
        }
        Ok(AllowList { rules: Some(valid) })
    }

    /// Whether any rule covers `repository` at all. Checked before the
    /// registry is contacted, so that a module of a repository no rule
    /// names causes no connection, not even a name lookup.
    pub fn check_repository(&self, reference: &str, repository: &str) -> Result<(), NotAllowed> {
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        if rules.iter().any(|rule| match &rule.repository {
            RepositoryPattern::Exact(exact) => exact == repository,
            RepositoryPattern::Under(prefix) => repository.starts_with(prefix.as_str()),
        }) {
            return Ok(());
        }
        Err(NotAllowed {
            reference: reference.to_owned(),
            reason: format!("no allow-list rule covers repository {repository}"),
        })
    }

    /// Whether the module of `repository` (`registry/path/name`, no tag)
    /// with these digests may run.
    pub fn check(
        &self,
        reference: &str,
        repository: &str,
        manifest_digest: &Digest,
        module_digest: &Digest,
    ) -> Result<(), NotAllowed> {
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        let mut repository_matched = false;
        for rule in rules {
            let matches = match &rule.repository {
                RepositoryPattern::Exact(exact) => exact == repository,
                RepositoryPattern::Under(prefix) => repository.starts_with(prefix.as_str()),
            };
            if !matches {
                continue;
            }
            repository_matched = true;
            match &rule.digests {
                None => return Ok(()),
                Some(digests)
                    if digests
                        .iter()
                        .any(|d| d == manifest_digest || d == module_digest) =>
                {
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        Err(NotAllowed {
            reference: reference.to_owned(),
            reason: if repository_matched {
                format!(
                    "digest {manifest_digest} (module {module_digest}) is not one of the pinned digests of {repository}"
                )
            } else {
                format!("no allow-list rule covers repository {repository}")
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repository: &str, digests: Option<Vec<String>>) -> AllowRule {
        AllowRule {
            repository: repository.to_owned(),
            digests,
        }
    }

    #[test]
    fn a_repository_no_rule_covers_is_refused_before_its_digests_are_known() {
        let list = AllowList::new(vec![
            rule("127.0.0.1:5000/v6/*", None),
            rule(
                "127.0.0.1:5000/tools/mean",
                Some(vec![Digest::of(b"m").to_string()]),
            ),
        ])
        .unwrap();
        for covered in ["127.0.0.1:5000/v6/mean", "127.0.0.1:5000/tools/mean"] {
            assert!(list.check_repository("r", covered).is_ok(), "{covered}");
        }
        for other in [
            "ghcr.io/vantage6/infrastructure/alpine",
            "127.0.0.1:5001/v6/mean",
            "127.0.0.1:5000/v6",
            "127.0.0.1:5000/tools/mean2",
            "127.0.0.1:5000/v6x/mean",
        ] {
            let e = list.check_repository("r", other).unwrap_err();
            assert!(
                e.reason.contains("no allow-list rule covers"),
                "{other}: {e}"
            );
        }
        assert!(
            AllowList::allow_all()
                .check_repository("r", "ghcr.io/x")
                .is_ok()
        );
    }

    #[test]
    fn without_a_list_everything_may_run() {
        let d = Digest::of(b"m");
        assert!(AllowList::allow_all().check("r/x:1", "r/x", &d, &d).is_ok());
    }

    #[test]
    fn repositories_match_exactly_or_under_a_prefix() {
        let list = AllowList::new(vec![
            rule("registry.example.org/algorithms/*", None),
            rule("127.0.0.1:5000/tools/mean", None),
        ])
        .unwrap();
        let d = Digest::of(b"m");
        assert!(
            list.check("a", "registry.example.org/algorithms/mean", &d, &d)
                .is_ok()
        );
        assert!(
            list.check("a", "registry.example.org/algorithms/deep/mean", &d, &d)
                .is_ok()
        );
        assert!(list.check("a", "127.0.0.1:5000/tools/mean", &d, &d).is_ok());
        // A prefix is a path, not a string prefix.
        let err = list
            .check("a", "registry.example.org/algorithmsX/mean", &d, &d)
            .unwrap_err();
        assert!(err.reason.contains("no allow-list rule covers"), "{err}");
        assert!(
            list.check("a", "127.0.0.1:5000/tools/mean2", &d, &d)
                .is_err()
        );
        assert!(
            AllowList::new(vec![])
                .unwrap()
                .check("a", "r/x", &d, &d)
                .is_err()
        );
    }

    #[test]
    fn pinned_digests_allow_only_those_modules() {
        let good = Digest::of(b"reviewed");
        let bad = Digest::of(b"changed");
        let manifest = Digest::of(b"manifest");
        let list = AllowList::new(vec![rule(
            "r.example/alg/mean",
            Some(vec![good.to_string()]),
        )])
        .unwrap();
        assert!(
            list.check(
                "r.example/alg/mean:v1",
                "r.example/alg/mean",
                &manifest,
                &good
            )
            .is_ok()
        );
        let err = list
            .check(
                "r.example/alg/mean:v1",
                "r.example/alg/mean",
                &manifest,
                &bad,
            )
            .unwrap_err();
        assert_eq!(err.reference, "r.example/alg/mean:v1");
        assert!(
            err.reason.contains("not one of the pinned digests"),
            "{err}"
        );
        // The manifest digest may be pinned instead of the layer's.
        let list = AllowList::new(vec![rule(
            "r.example/alg/mean",
            Some(vec![manifest.to_string()]),
        )])
        .unwrap();
        assert!(
            list.check("a", "r.example/alg/mean", &manifest, &bad)
                .is_ok()
        );
    }

    #[test]
    fn malformed_rules_are_refused() {
        for (repository, digests) in [
            ("*", None),
            ("r.example/*/mean", None),
            ("mean", None),
            ("r.example/alg/mean", Some(vec!["sha256:nope".to_owned()])),
        ] {
            let err = AllowList::new(vec![rule(repository, digests)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("allow-list rule {repository:?}")),
                "{err}"
            );
        }
    }
}

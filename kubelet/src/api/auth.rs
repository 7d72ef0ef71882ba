//! Who may use the kubelet API, decided as the kubelet decides it.
//!
//! This module owns authentication and authorization of kubelet API
//! requests; [`crate::api::server`] owns TLS and [`crate::api::routes`]
//! routing, which asks [`Gate::check`] before it routes anything.
//!
//! - **Authentication**, first that applies: a client certificate that the
//!   TLS layer verified against the client CA (user = its CN, groups = its
//!   O values); a bearer token, checked with a `TokenReview` when token
//!   review is on; `system:anonymous` in group `system:unauthenticated`
//!   when anonymous requests are allowed. Anything else is 401.
//! - **Authorization**: a `SubjectAccessReview` asking whether the user may
//!   `<verb>` `nodes/<subresource>` of this node, with the verb from the
//!   HTTP method and the subresource from the path (as the kubelet:
//!   `/healthz` is `healthz` and falls back to `proxy`, `/containerLogs`
//!   and everything not listed is `proxy`). A refusal is 403 naming the
//!   user, verb and subresource; a review that cannot be made is 500 and is
//!   not remembered.
//!
//! Answers are remembered like the kubelet's webhooks do: token reviews for
//! 2 minutes, allowed for 5 minutes, refused for 30 seconds.
//!
//! The defaults are the kubelet configuration file's: no anonymous
//! requests, token review on, `Webhook` authorization.
//!
//! It must never admit a request whose review could not be made, nor
//! remember a review that failed; a cache holds at most a few thousand
//! answers, so made-up tokens cannot grow it.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// How long a token review's answer is used.
pub(crate) const TOKEN_TTL: Duration = Duration::from_secs(120);
/// How long an allowed access review is used.
pub(crate) const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a refused access review is used.
pub(crate) const DENIED_TTL: Duration = Duration::from_secs(30);
/// At most this many answers are remembered per cache (so a stream of
/// made-up tokens cannot grow it without end).
const CACHE_ENTRIES: usize = 4096;

/// An authenticated user, as Kubernetes names one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) groups: Vec<String>,
    pub(crate) extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// The user of a request without credentials.
    pub(crate) fn anonymous() -> User {
        User {
            name: "system:anonymous".to_owned(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".to_owned()],
            extra: BTreeMap::new(),
        }
    }

    /// The user a verified client certificate names: CN and O values, as
    /// the API server reads them. `None` if the certificate has no CN.
    pub(crate) fn from_certificate(der: &[u8]) -> Option<User> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect();
        Some(User {
            name,
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        })
    }
}

/// `--authorization-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// Every authenticated request is allowed.
    AlwaysAllow,
    /// The API server decides with a SubjectAccessReview.
    Webhook,
}

/// An `--authorization-mode` that is neither `Webhook` nor `AlwaysAllow`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown authorization mode {0:?} (expected Webhook or AlwaysAllow)")]
pub struct UnknownAuthorizationMode(String);

impl std::str::FromStr for AuthorizationMode {
    type Err = UnknownAuthorizationMode;
    fn from_str(s: &str) -> Result<Self, UnknownAuthorizationMode> {
        match s {
            "AlwaysAllow" => Ok(AuthorizationMode::AlwaysAllow),
            "Webhook" => Ok(AuthorizationMode::Webhook),
            other => Err(UnknownAuthorizationMode(other.to_owned())),
        }
    }
}

/// How the kubelet API admits requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthOptions {
    /// `--anonymous-auth`: requests without credentials are
    /// `system:anonymous` (and then authorized) rather than refused.
    pub anonymous: bool,
    /// `--authentication-token-webhook`: bearer tokens are checked with a
    /// TokenReview.
    pub token_review: bool,
    /// `--authorization-mode`: who decides what an authenticated user may
    /// do.
    pub authorization: AuthorizationMode,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            anonymous: false,
            token_review: true,
            authorization: AuthorizationMode::Webhook,
        }
    }
}

/// What a request asks of the node, for authorization: `verb` on
/// `nodes/<subresource>`, or on `nodes/proxy` if that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    /// `get`, `create`, `update`, `patch` or `delete`, from the method.
    pub(crate) verb: &'static str,
    /// The subresource of `nodes`: `proxy`, `healthz`, `metrics`, ...
    pub subresource: &'static str,
}

/// The accesses that allow `method` on `path`, in the order asked: the
/// kubelet's fine-grained subresource first where it has one, then `proxy`.
pub fn accesses(method: &hyper::Method, path: &str) -> Vec<Access> {
    let verb = match *method {
        hyper::Method::POST => "create",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE => "delete",
        // GET, HEAD and anything else only read.
        _ => "get",
    };
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let access = |subresource| Access { verb, subresource };
    match first {
        "stats" => vec![access("stats")],
        "metrics" => vec![access("metrics")],
        "logs" => vec![access("log")],
        "spec" => vec![access("spec")],
        "checkpoint" => vec![access("checkpoint")],
        "healthz" => vec![access("healthz"), access("proxy")],
        "pods" => vec![access("pods"), access("proxy")],
        "configz" => vec![access("configz"), access("proxy")],
        _ => vec![access("proxy")],
    }
}

/// Why a request was not admitted; the server answers with
/// [`Refusal::status`] and [`Refusal::message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No acceptable credentials (401).
    Unauthorized,
    /// Authenticated, but not allowed (403).
    Forbidden { user: String, access: Access },
    /// A review could not be made (500); the reason is logged, not sent.
    Unavailable {
        user: String,
        access: Option<Access>,
        reason: String,
    },
}

impl Refusal {
    pub(crate) fn status(&self) -> hyper::StatusCode {
        match self {
            Refusal::Unauthorized => hyper::StatusCode::UNAUTHORIZED,
            Refusal::Forbidden { .. } => hyper::StatusCode::FORBIDDEN,
            Refusal::Unavailable { .. } => hyper::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response text, in the kubelet's words.
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::Unauthorized => "Unauthorized".to_owned(),
            Refusal::Forbidden { user, access } => format!(
                "Forbidden (user={user}, verb={}, resource=nodes, subresource={})",
                access.verb, access.subresource
            ),
            Refusal::Unavailable {
                user,
                access: Some(access),
                ..
            } => format!(
                "Authorization error (user={user}, verb={}, resource=nodes, subresource={})",
                access.verb, access.subresource
            ),
            Refusal::Unavailable { access: None, .. } => "Authentication error".to_owned(),
        }
    }
}

/// Why a review could not be made (the request is refused with 500).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReviewError {
    /// The TokenReview could not be created.
    #[error("TokenReview: {0}")]
    Token(#[source] kube::Error),
    /// The SubjectAccessReview could not be created.
    #[error("SubjectAccessReview: {0}")]
    Access(#[source] kube::Error),
    /// The authorizer could not evaluate the SubjectAccessReview.
    #[error("SubjectAccessReview: {0}")]
    Evaluation(String),
}

/// The API server's side of the decisions: token and access reviews.
pub(crate) trait Reviewer: Send + Sync + 'static {
    /// The user a bearer token belongs to, `None` if it is not valid.
    fn review_token(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<User>, ReviewError>> + Send;
    /// Whether `user` may do `access` on node `node`.
    fn review_access(
        &self,
        user: &User,
        access: Access,
        node: &str,
    ) -> impl Future<Output = Result<bool, ReviewError>> + Send;
}

/// Reviews through the API server, with the node's own credentials (the
/// Node authorizer lets a kubelet create both kinds of review).
pub(crate) struct ApiReviewer(pub kube::Client);

impl Reviewer for ApiReviewer {
    async fn review_token(&self, token: &str) -> Result<Option<User>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.0.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::Token)?;
        let Some(status) = reviewed.status else {
            return Ok(None);
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let Some(info) = status.user else {
            return Ok(None);
        };
        Ok(Some(User {
            name: info.username.unwrap_or_default(),
            uid: info.uid.unwrap_or_default(),
            groups: info.groups.unwrap_or_default(),
            extra: info.extra.unwrap_or_default(),
        }))
    }

    async fn review_access(
        &self,
        user: &User,
        access: Access,
        node: &str,
    ) -> Result<bool, ReviewError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(access.verb.to_owned()),
                    resource: Some("nodes".to_owned()),
                    subresource: Some(access.subresource.to_owned()),
                    name: Some(node.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.0.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::Access)?;
        let status = reviewed.status.unwrap_or_default();
        match status.evaluation_error {
            Some(error) if !status.allowed && status.denied != Some(true) => {
                Err(ReviewError::Evaluation(error))
            }
            _ => Ok(status.allowed),
        }
    }
}

/// Answers remembered until their deadline, at most [`CACHE_ENTRIES`].
struct Cache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().expect("auth cache poisoned");
        entries
            .get(key)
            .filter(|(deadline, _)| Instant::now() < *deadline)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("auth cache poisoned");
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, (deadline, _)| now < *deadline);
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now + ttl, value));
    }
}

/// Admits or refuses kubelet API requests.
pub(crate) struct Gate<R = ApiReviewer> {
    reviewer: R,
    node: String,
    options: AuthOptions,
    tokens: Cache<String, Option<User>>,
    decisions: Cache<(User, Access), bool>,
}

impl<R: Reviewer> Gate<R> {
    pub(crate) fn new(reviewer: R, node: &str, options: AuthOptions) -> Self {
        Gate {
            reviewer,
            node: node.to_owned(),
            options,
            tokens: Cache::new(),
            decisions: Cache::new(),
        }
    }

    /// Decides one request: `certificate_user` is the user of the verified
    /// client certificate of its connection, `authorization` its
    /// `Authorization` header.
    pub(crate) async fn check(
        &self,
        certificate_user: Option<&User>,
        authorization: Option<&str>,
        method: &hyper::Method,
        path: &str,
    ) -> Result<User, Refusal> {
        let user = self.authenticate(certificate_user, authorization).await?;
        self.authorize(&user, method, path).await?;
        Ok(user)
    }

    async fn authenticate(
        &self,
        certificate_user: Option<&User>,
        authorization: Option<&str>,
    ) -> Result<User, Refusal> {
        if let Some(user) = certificate_user {
            return Ok(user.clone());
        }
        // "Bearer <token>", the scheme in any case, as the API server reads it.
        let token = authorization
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty());
        match token {
            Some(token) if self.options.token_review => {
                let user = match self.tokens.get(&token.to_owned()) {
                    Some(user) => user,
                    None => {
                        let user = self.reviewer.review_token(token).await.map_err(|error| {
                            Refusal::Unavailable {
                                user: String::new(),
                                access: None,
                                reason: error.to_string(),
                            }
                        })?;
                        self.tokens.put(token.to_owned(), user.clone(), TOKEN_TTL);
                        user
                    }
                };
                user.ok_or(Refusal::Unauthorized)
            }
            // A token nobody checks is no credential; nor is a header
            // of another scheme.
            Some(_) => Err(Refusal::Unauthorized),
            None if authorization.is_none() && self.options.anonymous => Ok(User::anonymous()),
            None => Err(Refusal::Unauthorized),
        }
    }

    async fn authorize(
        &self,
        user: &User,
        method: &hyper::Method,
        path: &str,
    ) -> Result<(), Refusal> {
        if self.options.authorization == AuthorizationMode::AlwaysAllow {
            return Ok(());
        }
        let accesses = accesses(method, path);
        for &access in &accesses {
            let key = (user.clone(), access);
            let allowed = match self.decisions.get(&key) {
                Some(allowed) => allowed,
                None => {
                    let allowed = self
                        .reviewer
                        .review_access(user, access, &self.node)
                        .await
                        .map_err(|error| Refusal::Unavailable {
                            user: user.name.clone(),
                            access: Some(access),
                            reason: error.to_string(),
                        })?;
                    let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
                    self.decisions.put(key, allowed, ttl);
                    allowed
                }
            };
            if allowed {
                return Ok(());
            }
        }
        Err(Refusal::Forbidden {
            user: user.name.clone(),
            access: *accesses.last().expect("every path has an access"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Knows one token ("good" for "reader") and allows "reader" and
    /// group "admins" `get` on `nodes/proxy`, "checker" `get` on
    /// `nodes/healthz` only; "broken" makes every review fail.
    #[derive(Default)]
    struct Fake {
        token_reviews: AtomicUsize,
        access_reviews: AtomicUsize,
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.to_owned(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::new(),
        }
    }

    impl Reviewer for Fake {
        async fn review_token(&self, token: &str) -> Result<Option<User>, ReviewError> {
            self.token_reviews.fetch_add(1, Ordering::SeqCst);
            match token {
                "good" => Ok(Some(user("reader", &[]))),
                "broken" => Err(ReviewError::Evaluation("the API server is away".to_owned())),
                _ => Ok(None),
            }
        }

        async fn review_access(
            &self,
            user: &User,
            access: Access,
            node: &str,
        ) -> Result<bool, ReviewError> {
            self.access_reviews.fetch_add(1, Ordering::SeqCst);
            assert_eq!(node, "n1");
            if user.name == "broken" {
                return Err(ReviewError::Evaluation("the API server is away".to_owned()));
            }
            let proxy = access
                == Access {
                    verb: "get",
                    subresource: "proxy",
                };
            let healthz = access
                == Access {
                    verb: "get",
                    subresource: "healthz",
                };
            Ok(
                (user.name == "reader" || user.groups.iter().any(|g| g == "admins")) && proxy
                    || user.name == "checker" && healthz,
            )
        }
    }

    fn gate(options: AuthOptions) -> Gate<Fake> {
        Gate::new(Fake::default(), "n1", options)
    }

    fn get() -> hyper::Method {
        hyper::Method::GET
    }

    const LOGS: &str = "/containerLogs/ns/p/main";

    #[tokio::test]
    async fn requests_without_credentials_are_unauthorized_unless_anonymous_is_on() {
        let strict = gate(AuthOptions::default());
        assert_eq!(
            strict.check(None, None, &get(), LOGS).await,
            Err(Refusal::Unauthorized)
        );
        let open = gate(AuthOptions {
            anonymous: true,
            ..Default::default()
        });
        // Anonymous is a user like any other: authorized, and refused here.
        let refused = open.check(None, None, &get(), LOGS).await.unwrap_err();
        assert_eq!(
            refused.message(),
            "Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource=proxy)"
        );
        assert_eq!(refused.status(), hyper::StatusCode::FORBIDDEN);
        // A bad token is not turned into anonymous.
        assert_eq!(
            open.check(None, Some("Bearer forged"), &get(), LOGS).await,
            Err(Refusal::Unauthorized)
        );
    }

    #[tokio::test]
    async fn certificate_users_and_their_groups_are_authorized() {
        let g = gate(AuthOptions::default());
        let admin = user("someone", &["admins"]);
        assert_eq!(
            g.check(Some(&admin), None, &get(), LOGS).await,
            Ok(admin.clone())
        );
        let other = user("system:node:other", &["system:nodes"]);
        assert_eq!(
            g.check(Some(&other), None, &get(), LOGS).await,
            Err(Refusal::Forbidden {
                user: "system:node:other".to_owned(),
                access: Access {
                    verb: "get",
                    subresource: "proxy"
                }
            })
        );
        // POST is `create`, which nobody here may do.
        let refused = g
            .check(Some(&admin), None, &hyper::Method::POST, "/exec/ns/p/main")
            .await
            .unwrap_err();
        assert!(refused.message().contains("verb=create"), "{refused:?}");
    }

    #[tokio::test]
    async fn tokens_are_reviewed_once_and_decisions_remembered() {
        let g = gate(AuthOptions::default());
        for _ in 0..3 {
            let reader = g
                .check(None, Some("Bearer good"), &get(), LOGS)
                .await
                .unwrap();
            assert_eq!(reader.name, "reader");
            assert_eq!(
                g.check(None, Some("Bearer bad"), &get(), LOGS).await,
                Err(Refusal::Unauthorized)
            );
        }
        assert_eq!(g.reviewer.token_reviews.load(Ordering::SeqCst), 2);
        assert_eq!(g.reviewer.access_reviews.load(Ordering::SeqCst), 1);
        // The scheme's case does not matter; another scheme is no token.
        assert!(
            g.check(None, Some("bearer good"), &get(), LOGS)
                .await
                .is_ok()
        );
        assert_eq!(
            g.check(None, Some("Basic Z29vZA=="), &get(), LOGS).await,
            Err(Refusal::Unauthorized)
        );
        // With token review off, a token is no credential at all.
        let off = gate(AuthOptions {
            token_review: false,
            anonymous: true,
            ..Default::default()
        });
        assert_eq!(
            off.check(None, Some("Bearer good"), &get(), LOGS).await,
            Err(Refusal::Unauthorized)
        );
        assert_eq!(off.reviewer.token_reviews.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn healthz_is_allowed_by_its_own_subresource_or_by_proxy() {
        let g = gate(AuthOptions::default());
        let checker = user("checker", &[]);
        assert!(
            g.check(Some(&checker), None, &get(), "/healthz")
                .await
                .is_ok()
        );
        let reader = user("reader", &[]);
        assert!(
            g.check(Some(&reader), None, &get(), "/healthz")
                .await
                .is_ok()
        );
        // ... but nodes/healthz does not open the logs.
        assert!(g.check(Some(&checker), None, &get(), LOGS).await.is_err());
    }

    #[tokio::test]
    async fn failed_reviews_are_errors_and_are_not_remembered() {
        let g = gate(AuthOptions::default());
        let refused = g
            .check(None, Some("Bearer broken"), &get(), LOGS)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let _ = g.check(None, Some("Bearer broken"), &get(), LOGS).await;
        assert_eq!(g.reviewer.token_reviews.load(Ordering::SeqCst), 2);
        let broken = user("broken", &[]);
        let refused = g
            .check(Some(&broken), None, &get(), LOGS)
            .await
            .unwrap_err();
        assert_eq!(
            refused.message(),
            "Authorization error (user=broken, verb=get, resource=nodes, subresource=proxy)"
        );
        let _ = g.check(Some(&broken), None, &get(), LOGS).await;
        assert_eq!(g.reviewer.access_reviews.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn always_allow_admits_every_authenticated_user_but_not_the_unauthenticated() {
        let g = gate(AuthOptions {
            authorization: AuthorizationMode::AlwaysAllow,
            ..Default::default()
        });
        let nobody = user("nobody", &[]);
        assert!(g.check(Some(&nobody), None, &get(), LOGS).await.is_ok());
        assert_eq!(
            g.check(None, None, &get(), LOGS).await,
            Err(Refusal::Unauthorized)
        );
        assert_eq!(g.reviewer.access_reviews.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn paths_map_to_the_kubelets_subresources() {
        let subresources = |method: hyper::Method, path| {
            accesses(&method, path)
                .iter()
                .map(|a| format!("{} {}", a.verb, a.subresource))
                .collect::<Vec<_>>()
        };
        assert_eq!(subresources(get(), LOGS), ["get proxy"]);
        assert_eq!(
            subresources(get(), "/healthz"),
            ["get healthz", "get proxy"]
        );
        assert_eq!(subresources(get(), "/logs/syslog"), ["get log"]);
        assert_eq!(subresources(get(), "/stats/summary"), ["get stats"]);
        assert_eq!(
            subresources(hyper::Method::POST, "/exec/a/b/c"),
            ["create proxy"]
        );
        assert_eq!(subresources(hyper::Method::DELETE, "/"), ["delete proxy"]);
        assert!("Webhook".parse::<AuthorizationMode>().is_ok());
        assert!(
            "RBAC"
                .parse::<AuthorizationMode>()
                .unwrap_err()
                .to_string()
                .contains("RBAC")
        );
    }

    #[test]
    fn certificate_subjects_name_the_user_and_groups() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n2");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            User::from_certificate(cert.der()),
            Some(user("system:node:n2", &["system:nodes"]))
        );
        assert_eq!(User::from_certificate(b"not a certificate"), None);
    }
}

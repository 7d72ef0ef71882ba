//! The node's API client: its configuration (from `--kubeconfig`, or the
//! environment) and the HTTP/2 connection stack it talks through.
//!
//! This module owns how the node connects to the API server. It must
//! never send a request through another stack than kube's own layers
//! (base URI, authentication, headers): the node's requests are the
//! node's, authenticated as kube-rs authenticates them.

use std::path::{Path, PathBuf};

use kube::Client;
use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};

/// Why the node has no API client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file cannot be read or used.
    #[error("{}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: KubeconfigError,
    },
    /// No kubeconfig was given and the environment has none.
    #[error("{0}")]
    Infer(#[source] InferConfigError),
    /// The configuration does not make a client (its TLS or credentials).
    #[error("{0}")]
    Build(#[source] kube::Error),
}

/// The API client the node uses (HTTP/2, from `kubeconfig` or the
/// environment); public so that the load generator's reference kubelet
/// talks to the API server exactly as the node does.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    http2_client(client_config(kubeconfig).await?)
}

/// The client configuration from `kubeconfig` or the environment.
pub(crate) async fn client_config(kubeconfig: Option<&Path>) -> Result<kube::Config, ClientError> {
    match kubeconfig {
        Some(path) => {
            let error = |source| ClientError::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(error)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(error)
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer),
    }
}

/// A kube client that speaks HTTP/2 to the API server (kube-rs's default
/// client offers only HTTP/1.1, so a burst of pod starts opened one TLS
/// connection per concurrent request); same base URI, authentication and
/// headers as the default stack.
pub(crate) fn http2_client(config: kube::Config) -> Result<Client, ClientError> {
    use kube::client::ConfigExt;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let tls = config.rustls_client_config().map_err(ClientError::Build)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(ClientError::Build)?)
        .layer(config.extra_headers_layer().map_err(ClientError::Build)?)
        .map_err(tower::BoxError::from)
        .service(client);
    Ok(Client::new(service, config.default_namespace.clone()))
}

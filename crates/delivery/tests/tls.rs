//! Deliveries over HTTPS: certificates are always checked, and `SIPSIM_EXTRA_CA_CERTS` (the sender's
//! `extra_ca_pem`) is how a test CA becomes trusted. The receiver is a real TLS server on loopback,
//! reached by name through a DNS override.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod raw_http;

use raw_http::read_request;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sipsim_core::target::TargetPolicy;
use sipsim_delivery::resolve::parse_overrides;
use sipsim_delivery::sender::Outgoing;
use sipsim_delivery::{Sender, SenderConfig, Verdict};
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A TLS server presenting a certificate for `hook.test` signed by a fresh test CA (or self-signed).
/// Answers every complete request with 200 and counts them. Returns the port and the CA's PEM.
async fn tls_receiver(self_signed: bool) -> (u16, String, Arc<AtomicUsize>) {
    sipsim_delivery::install_crypto_provider();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params = CertificateParams::new(vec!["hook.test".to_owned()]).unwrap();
    let leaf = if self_signed {
        leaf_params.self_signed(&leaf_key).unwrap()
    } else {
        leaf_params.signed_by(&leaf_key, &ca).unwrap()
    };
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if !read_request(&mut tls).await {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, ca.pem(), served)
}

fn sender(extra_ca_pem: Option<String>) -> Sender {
    Sender::new(SenderConfig {
        timeout: Duration::from_secs(2),
        // Loopback is where the test server is; certificate checks do not depend on this policy.
        policy: TargetPolicy::AllowInsecure,
        dns_overrides: parse_overrides("hook.test=127.0.0.1").unwrap(),
        extra_ca_pem: extra_ca_pem.map(String::into_bytes),
    })
    .unwrap()
}

async fn send(sender: &Sender, port: u16) -> (sipsim_core::queue::AttemptRecord, Verdict) {
    let url = format!("https://hook.test:{port}/webhooks");
    sender
        .send(Outgoing {
            url: &url,
            message_id: "msg_tls",
            event: "sms",
            body: b"{}",
            secret: "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            previous_secret: None,
        })
        .await
}

#[tokio::test]
async fn a_certificate_from_a_trusted_extra_ca_is_accepted() {
    let (port, ca_pem, served) = tls_receiver(false).await;
    let (record, verdict) = send(&sender(Some(ca_pem)), port).await;
    assert_eq!(verdict, Verdict::Success, "{record:?}");
    assert_eq!(record.status_code, Some(200));
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_untrusted_or_self_signed_certificate_is_refused() {
    let (port, _ca_pem, served) = tls_receiver(false).await;
    let (record, verdict) = send(&sender(None), port).await;
    assert_eq!(verdict, Verdict::FAILURE);
    let error = record.error.unwrap_or_default();
    assert!(error.contains("certificate") || error.contains("UnknownIssuer"), "{error}");

    let (port, ca_pem, served_self) = tls_receiver(true).await;
    // Trusting some CA does not make a self-signed leaf acceptable.
    let (record, verdict) = send(&sender(Some(ca_pem)), port).await;
    assert_eq!(verdict, Verdict::FAILURE, "{record:?}");
    assert_eq!(served.load(Ordering::SeqCst) + served_self.load(Ordering::SeqCst), 0);
}

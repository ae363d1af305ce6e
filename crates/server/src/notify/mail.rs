//! Sending failure emails over SMTP: `SIPSIM_SMTP_URL` parsed and checked at start, a lettre
//! transport on rustls with ring (the one TLS stack of the process), one message per recipient.

use std::fmt;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The time limit of each SMTP command, connecting included: a hung server delays one notice,
/// never the next round for long.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtp://…`: plain SMTP (a relay on the same host or network).
    Plain,
    /// `smtp://…?tls=required`: STARTTLS, and nothing is sent unless it succeeds.
    StartTls,
    /// `smtps://…`: TLS from the first byte.
    Wrapper,
}

/// Where failure emails go out: `SIPSIM_SMTP_URL`, read. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// The server's name (or address), also the name its certificate must carry.
    pub host: String,
    /// Its port (defaults: 25 plain, 587 STARTTLS, 465 TLS).
    pub port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// User and password, from the URL, percent-decoded.
    credentials: Option<(String, String)>,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpUrl {
    /// Parses `smtp://[user:password@]host[:port][?tls=required]` or `smtps://…`. The error never
    /// repeats the URL: it may hold a password.
    pub fn parse(text: &str) -> Result<SmtpUrl, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        let mut tls = match url.scheme() {
            "smtp" => SmtpTls::Plain,
            "smtps" => SmtpTls::Wrapper,
            other => return Err(format!("the scheme must be smtp or smtps, not '{other}'")),
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), tls) {
                ("tls", "required", SmtpTls::Plain) => tls = SmtpTls::StartTls,
                ("tls", "required", _) => {}
                _ => return Err(format!("unknown parameter '{key}={value}' (only tls=required)")),
            }
        }
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err("a path or fragment means nothing here".into());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port().unwrap_or(match tls {
            SmtpTls::Plain => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Wrapper => 465,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "the user or password is not UTF-8 once percent-decoded".to_owned())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (_, None) => return Err("a user needs a password (smtp://user:password@host)".into()),
            (user, Some(password)) => Some((decode(user)?, decode(password)?)),
        };
        Ok(SmtpUrl { host, port, tls, credentials })
    }
}

/// Everything sending needs: the server, the sender's address, and roots to trust beside the
/// usual ones (`SIPSIM_EXTRA_CA_CERTS`).
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `SIPSIM_SMTP_URL`.
    pub smtp: SmtpUrl,
    /// `SIPSIM_SMTP_FROM`: `alerts@example.com` or `SIPSIM webhooks <alerts@example.com>`.
    pub from: Mailbox,
    /// Extra trusted roots (PEM), for a server with a private CA.
    pub extra_ca_pem: Option<Vec<u8>>,
}

/// One email, before it is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Its subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// Its `Message-ID` (without the angle brackets): the same for every copy of one notice, so
    /// a copy sent twice is one message to a mail client.
    pub message_id: String,
}

/// An SMTP client for failure emails.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A client of `settings.smtp`; fails on unreadable extra roots.
    pub fn new(settings: &MailSettings) -> anyhow::Result<Mailer> {
        let SmtpUrl { host, port, tls, credentials } = &settings.smtp;
        let parameters = || -> anyhow::Result<TlsParameters> {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(pem) = &settings.extra_ca_pem {
                // Every certificate of the file: lettre reads them all, as the delivery client does.
                builder = builder.add_root_certificate(Certificate::from_pem(pem)?);
            }
            Ok(builder.build_rustls()?)
        };
        let tls = match tls {
            SmtpTls::Plain => Tls::None,
            SmtpTls::StartTls => Tls::Required(parameters()?),
            SmtpTls::Wrapper => Tls::Wrapper(parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(*port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer { transport: builder.build(), from: settings.from.clone() })
    }

    /// Sends `email` to `to`. The error says what the server (or the network) answered.
    pub async fn send(&self, to: &str, email: &Email) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("not an address ({e})"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.as_str())
            .message_id(Some(format!("<{}>", email.message_id)))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
            .map_err(|e| format!("cannot build the message ({e})"))?;
        self.transport.send(message).await.map(drop).map_err(|e| sipsim_core::error_chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_say_server_port_tls_and_credentials() {
        let plain = SmtpUrl::parse("smtp://relay.internal").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.tls),
            ("relay.internal", 25, SmtpTls::Plain)
        );
        assert_eq!(plain.credentials, None);
        let starttls = SmtpUrl::parse("smtp://mail.example.com?tls=required").unwrap();
        assert_eq!((starttls.port, starttls.tls), (587, SmtpTls::StartTls));
        let wrapped =
            SmtpUrl::parse("smtps://ops%40example.com:p%3Ass@mail.example.com:2465").unwrap();
        assert_eq!((wrapped.port, wrapped.tls), (2465, SmtpTls::Wrapper));
        assert_eq!(wrapped.credentials, Some(("ops@example.com".into(), "p:ss".into())));
        assert!(!format!("{wrapped:?}").contains("p:ss"), "Debug hides the password");
        assert_eq!(SmtpUrl::parse("smtp://[::1]:2525").unwrap().host, "::1");
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_them() {
        for (url, says) in [
            ("http://mail.example.com", "scheme"),
            ("smtp://mail.example.com?tls=maybe", "tls=required"),
            ("smtp://user@mail.example.com", "password"),
            ("smtp://mail.example.com/inbox", "path"),
            ("mail.example.com:25", "scheme"),
            ("not a url", "URL"),
            ("smtp://:secret@", "host"),
        ] {
            let error = SmtpUrl::parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(!error.contains("secret"), "{url}: {error}");
        }
    }
}

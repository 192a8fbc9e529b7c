//! Certificates made at run time for the TLS tests and example (feature
//! `tls`): a certificate authority of our own, and the server and client
//! certificates it signs. Never for production: the keys live only in
//! memory (or in the files a test writes them to).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rpc::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority: trust its [`certificate`](Self::certificate)
/// and every certificate it [`issue`](Self::issue)s is trusted.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    certificate_pem: String,
}

/// A certificate chain (leaf first) and its private key, as PEM too.
#[derive(Debug)]
pub struct Identity {
    /// The certificate and the CA's behind it.
    pub chain: Vec<CertificateDer<'static>>,
    /// The certificate's private key, PKCS#8.
    pub key_der: Vec<u8>,
    /// `chain` as PEM.
    pub chain_pem: String,
    /// The key as PEM.
    pub key_pem: String,
}

impl Identity {
    /// The private key, as rustls takes it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }

    /// The leaf certificate's DER bytes: what a peer sees first in
    /// `Peer::certificates()`.
    pub fn leaf(&self) -> &[u8] {
        &self.chain[0]
    }
}

/// How long an issued certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday to a year from now, about.
    Current,
    /// Expired: its validity ended years ago.
    Expired,
}

impl Ca {
    /// A new authority, its key made now.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generating a CA key");
        let certificate = params.self_signed(&key).expect("self-signing the CA");
        Ca {
            certificate: certificate.der().clone(),
            certificate_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The authority's own certificate: the root to trust.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.certificate.clone()
    }

    /// [`certificate`](Self::certificate) as PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str], validity: Validity) -> Identity {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, validity)
    }

    /// A client certificate whose common name (and only name) is `name`.
    pub fn client(&self, name: &str) -> Identity {
        self.issue(
            &[name],
            ExtendedKeyUsagePurpose::ClientAuth,
            Validity::Current,
        )
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, valid: Validity) -> Identity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        if valid == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("generating a key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("signing a certificate");
        let chain = vec![certificate.der().clone(), self.certificate.clone()];
        Identity {
            chain_pem: format!("{}{}", certificate.pem(), self.certificate_pem),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            chain,
        }
    }
}

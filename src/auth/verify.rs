//! SPF at MAIL; DKIM, ARC and DMARC at end of message, under one deadline;
//! the Authentication-Results header this host adds.

use super::{decide, AuthResult, AuthSummary, Authenticator, DkimVerdict, DmarcPolicy};
use crate::vocab::{domain_of, org_domain};
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, SpfOutput, SpfResult,
};
use std::net::IpAddr;

/// SPF of the MAIL FROM and HELO identities, taken at MAIL.
#[derive(Clone, Debug)]
pub struct SpfState {
    pub mail_from: SpfOutput,
    pub helo: SpfOutput,
    /// The domain SPF checked: the envelope sender's, or HELO's for `<>`.
    pub domain: String,
    /// The HELO name as given (`unknown` when there was none), for the
    /// `smtp.helo` of Authentication-Results.
    pub helo_domain: String,
}

impl SpfState {
    fn temperror(domain: &str, helo_domain: &str) -> SpfState {
        SpfState {
            mail_from: SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError),
            helo: SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError),
            domain: domain.to_string(),
            helo_domain: helo_domain.to_string(),
        }
    }
}

impl Authenticator {
    /// SPF for MAIL FROM (or HELO for the null sender) and HELO.
    pub async fn check_spf(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: Option<&str>,
        host: &str,
    ) -> SpfState {
        let helo_domain = if helo.is_empty() { "unknown" } else { helo };
        let sender_domain = mail_from
            .map(|m| domain_of(m).to_string())
            .unwrap_or_else(|| helo_domain.to_string());
        let deadline = tokio::time::Instant::now() + self.timeout;
        let helo_fut = self
            .inner
            .verify_spf(self.params(SpfParameters::verify_ehlo(ip, helo_domain, host)));
        let helo_out = match tokio::time::timeout_at(deadline, helo_fut).await {
            Ok(o) => o,
            Err(_) => return SpfState::temperror(&sender_domain, helo_domain),
        };
        let mail_out = match mail_from {
            None => helo_out.clone(),
            Some(m) => {
                let fut = self
                    .inner
                    .verify_spf(self.params(SpfParameters::verify_mail_from(
                        ip,
                        helo_domain,
                        host,
                        m,
                    )));
                match tokio::time::timeout_at(deadline, fut).await {
                    Ok(o) => o,
                    Err(_) => {
                        SpfOutput::new(sender_domain.clone()).with_result(SpfResult::TempError)
                    }
                }
            }
        };
        SpfState {
            mail_from: mail_out,
            helo: helo_out,
            domain: sender_domain,
            helo_domain: helo_domain.to_string(),
        }
    }

    /// DKIM, ARC and DMARC of a complete message, under one deadline, and
    /// the Authentication-Results header value.
    pub async fn verify(
        &self,
        raw: &[u8],
        spf: &SpfState,
        from_domain: Option<&str>,
        ip: IpAddr,
        authserv_id: &str,
    ) -> (AuthSummary, Option<String>) {
        let mut s = AuthSummary {
            source: "verified".into(),
            spf: spf.mail_from.result().into(),
            spf_domain: spf.domain.clone(),
            spf_helo: spf.helo.result().into(),
            ..AuthSummary::default()
        };
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            s.dmarc = AuthResult::None;
            s.arc = AuthResult::None;
            s.authenticated = Some(false);
            return (s, None);
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let dkim = match tokio::time::timeout_at(
            deadline,
            self.inner.verify_dkim(self.params(&msg)),
        )
        .await
        {
            Ok(d) => d,
            Err(_) => {
                s.temperror = true;
                Vec::new()
            }
        };
        for d in &dkim {
            s.dkim.push(DkimVerdict {
                domain: d
                    .signature()
                    .map(|sig| sig.d.to_ascii_lowercase())
                    .unwrap_or_default(),
                result: d.result().into(),
                selector: d
                    .signature()
                    .map(|sig| sig.s.to_ascii_lowercase())
                    .unwrap_or_default(),
            });
            s.temperror |= matches!(d.result(), DkimResult::TempError(_));
        }
        let arc = tokio::time::timeout_at(deadline, self.inner.verify_arc(self.params(&msg))).await;
        s.arc = match &arc {
            Ok(a) => a.result().into(),
            Err(_) => AuthResult::TempError,
        };
        let dmarc_params = mail_auth::dmarc::verify::DmarcParameters {
            message: &msg,
            dkim_output: &dkim,
            dkim2_output: None,
            rfc5321_mail_from_domain: &spf.domain,
            spf_output: &spf.mail_from,
        };
        let dmarc =
            tokio::time::timeout_at(deadline, self.inner.verify_dmarc(self.params(dmarc_params)))
                .await;
        let mut ar = AuthenticationResults::new(authserv_id)
            .with_dkim_results(&dkim, from_domain.unwrap_or(""))
            .with_spf_ehlo_result(&spf.helo, ip, &spf.helo_domain)
            .with_spf_mailfrom_result(&spf.mail_from, ip, &spf.domain, &spf.helo_domain);
        if let Ok(a) = &arc {
            ar = ar.with_arc_result(a, ip);
        }
        let from_org = from_domain.map(org_domain);
        match &dmarc {
            Err(_) => {
                s.dmarc = AuthResult::TempError;
                s.temperror = true;
            }
            Ok(out) => {
                ar = ar.with_dmarc_result(out);
                let (spf_r, dkim_r) = (out.spf_result(), out.dkim_result());
                let has_record = out.dmarc_record().is_some();
                s.dmarc =
                    if matches!(spf_r, DmarcResult::Pass) || matches!(dkim_r, DmarcResult::Pass) {
                        AuthResult::Pass
                    } else if matches!(spf_r, DmarcResult::TempError(_))
                        || matches!(dkim_r, DmarcResult::TempError(_))
                    {
                        AuthResult::TempError
                    } else if has_record {
                        AuthResult::Fail
                    } else {
                        AuthResult::from(spf_r)
                    };
                if has_record {
                    s.dmarc_policy = match out.policy() {
                        Policy::Reject => DmarcPolicy::Reject,
                        Policy::Quarantine => DmarcPolicy::Quarantine,
                        _ => DmarcPolicy::None,
                    };
                }
            }
        }
        s.temperror |= s.dmarc == AuthResult::TempError || s.spf == AuthResult::TempError;
        s.authenticated = decide(&s, from_org.as_deref());
        (s, Some(ar.to_string()))
    }
}

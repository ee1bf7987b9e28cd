//! SaslHandshake (key 17) and SaslAuthenticate (key 36) where no exchange belongs: on a
//! listener without SASL, or on an authenticated connection that may not
//! re-authenticate (`connections.max.reauth.ms` unset). Kafka answers both with
//! `ILLEGAL_SASL_STATE`; the exchange itself runs in [`crate::security::sasl`].

use super::{msg, RequestContext};
use crate::broker::Broker;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use moldau_protocol::error::ResponseError;
use std::sync::Arc;

/// SaslHandshake outside an exchange: `ILLEGAL_SASL_STATE`, with the mechanisms of the
/// listener the request came in on (none on a listener without SASL).
pub async fn handshake_out_of_place(
    broker: Arc<Broker>,
    ctx: RequestContext,
    _req: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let mechanisms = broker
        .config
        .security
        .get(&*ctx.listener)
        .and_then(|s| s.sasl.as_ref())
        .map(|s| {
            s.mechanisms
                .iter()
                .map(|m| kafka_protocol::protocol::StrBytes::from_static_str(m.name()))
                .collect()
        })
        .unwrap_or_default();
    SaslHandshakeResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_mechanisms(mechanisms)
}

/// SaslAuthenticate outside an exchange: `ILLEGAL_SASL_STATE`.
pub async fn authenticate_out_of_place(
    _broker: Arc<Broker>,
    _ctx: RequestContext,
    _req: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(msg(
            "SaslAuthenticate is only valid during a SASL exchange on a SASL listener",
        ))
}

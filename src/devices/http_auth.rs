//! Devices calling the HTTP API (care workers' phones) authenticate with HTTP Basic: the device
//! uid as user name and its secret as password, the same credential as on MQTT.

use std::future::Future;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;

use super::DeviceRef;
use crate::http::{ApiError, AppState};

/// The device behind a request.
pub struct DeviceCaller {
    pub device: DeviceRef,
}

impl FromRequest for DeviceCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let creds = basic_credentials(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let (uid, secret) = creds.ok_or(ApiError::Unauthorized)?;
            let state =
                state.ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no app state")))?;
            let device = super::verify::verify_device(
                state.auth_pool(),
                &state.auth_failures,
                &uid,
                &secret,
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot check a device's credential");
                ApiError::Unavailable
            })?
            .ok_or(ApiError::Unauthorized)?;
            Ok(DeviceCaller { device })
        })
    }
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (uid, secret) = text.split_once(':')?;
    Some((uid.to_string(), secret.to_string()))
}

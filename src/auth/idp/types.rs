//! The `openidconnect` types as Gatehouse instantiates them: the claims and
//! discovery fields it reads beyond the standard ones ([`OtherClaims`],
//! [`ExtraProviderMetadata`]) and the `Gh*` aliases of the crate's generic
//! ID token, token response and client built with them.

use openidconnect::{
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
        CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
        CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
        CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
    },
    AdditionalClaims, AdditionalProviderMetadata, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdToken, IdTokenClaims, IdTokenFields, LogoutProviderMetadata, ProviderMetadata,
    StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Claims beyond the standard ones (roles, `sid`, anything the IdP adds), kept
/// as JSON so the configured roles path can reach them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}
impl AdditionalClaims for OtherClaims {}

/// Discovery fields Gatehouse reads beyond the crate's own.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraProviderMetadata {
    /// RFC 9207 §3: when true, the `iss` authorization response parameter is required.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 7009 / RFC 8414 §2: where tokens are revoked. Kept as text and
    /// parsed when used, so a malformed one costs revocation, not sign-in.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RFC 9126 §5: where authorization requests are pushed (text, as above).
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// RFC 9126 §5: the IdP accepts authorization requests only if pushed.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}
impl AdditionalProviderMetadata for ExtraProviderMetadata {}

/// `ProviderMetadataWithLogout`, with [`ExtraProviderMetadata`] inside.
pub type ProviderMetadataWithExtras = ProviderMetadata<
    LogoutProviderMetadata<ExtraProviderMetadata>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

pub type GhIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type GhIdTokenClaims = IdTokenClaims<OtherClaims, CoreGenderClaim>;
pub type GhTokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        openidconnect::EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
pub type GhClient = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    GhTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

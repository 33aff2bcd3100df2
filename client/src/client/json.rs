//! Typed helpers (feature `json`): values stored as JSON, written and read with serde.
//!
//! They are plain [`Client::set`] and [`Client::get`] calls around serde_json, so they route,
//! fail over and obey the write policy exactly as those do. The flags are the caller's: nothing
//! marks an item as JSON, so reading with [`Client::get_json`] a value that was not written as
//! JSON of that type is a [`ClientError::Json`], not a miss.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Client, ClientError, Stored};
use crate::policy::Ttl;

impl Client {
    /// Stores `value`, serialized as JSON, under `key` unconditionally (as [`Client::set`]).
    /// A value serde_json cannot serialize (a map with non-string keys, say) is a
    /// [`ClientError::Json`] and nothing is sent.
    pub async fn set_json<T: Serialize + ?Sized>(
        &self,
        key: &[u8],
        value: &T,
        flags: u32,
        ttl: Ttl,
    ) -> Result<Stored, ClientError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ClientError::Json(e.to_string()))?;
        self.set(key, &bytes, flags, ttl).await
    }

    /// The value under `key` deserialized from JSON as a `T`, or `None` on a miss (read as
    /// [`Client::get`] reads). A value that is not JSON of type `T` is a
    /// [`ClientError::Json`].
    pub async fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ClientError> {
        let Some((bytes, _flags)) = self.get(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Json(e.to_string()))
    }
}

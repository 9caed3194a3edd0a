//! Key encodings. Integers are big-endian so sled's byte order is numeric order, which makes
//! per-room message ranges and "everything of this user" prefix scans plain range scans.

use uuid::Uuid;

/// Room id followed by the per-room sequence number: messages of a room are contiguous and in
/// sequence order.
pub fn message(room_id: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&room_id.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Room id followed by user id: the members of a room are contiguous.
pub fn membership(room_id: u64, user_id: Uuid) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&room_id.to_be_bytes());
    key[8..].copy_from_slice(user_id.as_bytes());
    key
}

/// User id followed by room id: the rooms of a user are contiguous.
pub fn user_room(user_id: Uuid, room_id: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(user_id.as_bytes());
    key[16..].copy_from_slice(&room_id.to_be_bytes());
    key
}

/// User id followed by refresh-token family id: all sessions of a user are contiguous.
pub fn family(user_id: Uuid, family_id: Uuid) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(user_id.as_bytes());
    key[16..].copy_from_slice(family_id.as_bytes());
    key
}

/// External issuer, NUL, the issuer's user id. Issuers hold no NUL (config validation), so the
/// first NUL ends the issuer and no two identities share a key.
pub fn external_id(issuer: &str, subject: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(issuer.len() + 1 + subject.len());
    key.extend_from_slice(issuer.as_bytes());
    key.push(0);
    key.extend_from_slice(subject.as_bytes());
    key
}

/// Room id + author id + the client's message id: finds the original of a retried Send.
pub fn client_msg(room_id: u64, author: Uuid, client_msg_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(24 + client_msg_id.len());
    key.extend_from_slice(&room_id.to_be_bytes());
    key.extend_from_slice(author.as_bytes());
    key.extend_from_slice(client_msg_id.as_bytes());
    key
}

/// User id + a u64 sequence: a user's queued direct messages and notifications, in order.
pub fn user_seq(user_id: Uuid, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(user_id.as_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Room id + file id + sequence: a message of the room that lists the file. The messages that
/// list a file are contiguous (a file is attached in one room only), and so are a room's.
pub fn file_ref(room_id: u64, file_id: u64, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&room_id.to_be_bytes());
    key[8..16].copy_from_slice(&file_id.to_be_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix of the [`file_ref`]s of one file.
pub fn file_refs(room_id: u64, file_id: u64) -> [u8; 16] {
    message(room_id, file_id)
}

pub fn room(room_id: u64) -> [u8; 8] {
    room_id.to_be_bytes()
}

/// Decodes a big-endian u64 from the 8 bytes at `offset`, if the key is long enough.
pub fn u64_at(key: &[u8], offset: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Decodes a UUID from the 16 bytes at `offset`, if the key is long enough.
pub fn uuid_at(key: &[u8], offset: usize) -> Option<Uuid> {
    let bytes: [u8; 16] = key.get(offset..offset + 16)?.try_into().ok()?;
    Some(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_room_then_sequence() {
        let mut keys = vec![message(2, 1), message(1, 256), message(1, 2), message(2, 0)];
        keys.sort();
        assert_eq!(
            keys,
            vec![message(1, 2), message(1, 256), message(2, 0), message(2, 1)]
        );
        assert_eq!(u64_at(&message(7, 9), 8), Some(9));
        assert_eq!(u64_at(&message(7, 9), 12), None);
    }
}

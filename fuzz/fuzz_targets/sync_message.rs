//! Instance sync messages: `Message::open` never panics on any bytes. Half the inputs are
//! taken as a body and authenticated with the test key first, so the parser behind the MAC
//! is reached too; a message it accepts seals back to exactly the bytes it read (the format
//! has one encoding), and any flipped byte of those is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slowpath::sync::message::{Key, MAC_LEN, Message, authenticate};

fuzz_target!(|data: &[u8]| {
    let key = Key::new(b"fuzz key, 16 bytes or more").expect("long enough");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        authenticate(rest.to_vec(), &key)
    };
    let Ok(m) = Message::open(&bytes, &key) else {
        return;
    };
    assert_eq!(m.seal(&key), bytes, "one encoding");
    let mut flipped = bytes.clone();
    let at = usize::from(mode) % (flipped.len() - MAC_LEN);
    flipped[at] ^= 0x80;
    assert!(Message::open(&flipped, &key).is_err());
});

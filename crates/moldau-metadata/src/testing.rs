//! Helpers for this crate's tests: build images the way the controller would.

use crate::image::MetadataImage;
use crate::records::{BrokerEndpoint, MetadataRecord};
use uuid::Uuid;

/// Registers `broker` (unfenced) in `image` at the next offset.
pub fn register(image: &mut MetadataImage, broker: i32, rack: Option<&str>) {
    let offset = image.offset + 1;
    image.apply(
        offset,
        &MetadataRecord::RegisterBroker {
            broker_id: broker,
            incarnation_id: Uuid::from_u128(broker as u128),
            listeners: vec![BrokerEndpoint {
                name: "PLAINTEXT".into(),
                host: format!("h{broker}"),
                port: 9092,
                security_protocol: 0,
            }],
            rack: rack.map(str::to_owned),
            fenced: false,
            host: None,
            port: None,
        },
    );
}

/// Applies `records` at consecutive offsets.
pub fn apply_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
    for r in records {
        let offset = image.offset + 1;
        image.apply(offset, r);
    }
}

//! Dumps as JSON objects: the columns of the pmap format the dump was taken in, as fields with
//! numbers as numbers, plus the raw fields of each mapping's `/proc/PID/maps` line.

use serde_json::{Map, Value, json};

use super::{
    events::escape_bytes,
    pmap::{PmapFormat, ProcessDump, ProcessView, Row, SmapsRow, Table, Totals},
};
use crate::model::Mapping;

/// The name of a format in the `format` field.
fn format_name(format: PmapFormat) -> &'static str {
    match format {
        PmapFormat::Default => "default",
        PmapFormat::Extended => "extended",
        PmapFormat::Device => "device",
        PmapFormat::Smaps => "smaps",
        PmapFormat::AllSmaps => "smaps-all",
    }
}

/// The fields of a mapping's `/proc/PID/maps` line.
pub(super) fn raw_fields(m: &Mapping, object: &mut Map<String, Value>) {
    let p = m.perms;
    let flag = |on: bool, c: char| if on { c } else { '-' };
    let perms: String = [
        flag(p.read, 'r'),
        flag(p.write, 'w'),
        flag(p.exec, 'x'),
        if p.shared { 's' } else { 'p' },
    ]
    .into_iter()
    .collect();
    object.insert("start".into(), m.start.into());
    object.insert("end".into(), m.end.into());
    object.insert("perms".into(), perms.into());
    object.insert("offset".into(), m.offset.into());
    object.insert(
        "device".into(),
        format!("{:02x}:{:02x}", m.device.major, m.device.minor).into(),
    );
    object.insert("inode".into(), m.inode.into());
    object.insert("path".into(), escape_bytes(&m.name).into());
}

fn maps_row(view: &ProcessView, format: PmapFormat, row: &Row) -> Value {
    let mut object = Map::new();
    object.insert("address".into(), format!("{:016x}", row.start).into());
    object.insert("kbytes".into(), (row.size >> 10).into());
    if format == PmapFormat::Extended {
        object.insert("rss".into(), row.rss.into());
        object.insert("dirty".into(), row.dirty.into());
    }
    object.insert("mode".into(), String::from_utf8_lossy(&row.mode).into());
    object.insert(
        "mapping".into(),
        escape_bytes(row.name.trim_ascii_start()).into(),
    );
    raw_fields(&view.mappings[row.mapping], &mut object);
    Value::Object(object)
}

fn smaps_row(view: &ProcessView, row: &SmapsRow) -> Value {
    let mut values = Map::new();
    for (key, value) in &row.values {
        values.insert(String::from_utf8_lossy(key).into_owned(), (*value).into());
    }
    let mut object = Map::new();
    object.insert("address".into(), format!("{:016x}", row.start).into());
    object.insert("values".into(), Value::Object(values));
    if let Some(flags) = &row.flags {
        let flags: Vec<String> = flags
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        object.insert("vmflags".into(), flags.into());
    }
    object.insert("mapping".into(), escape_bytes(&row.name).into());
    raw_fields(&view.mappings[row.mapping], &mut object);
    Value::Object(object)
}

/// One dump: `{"type":"dump","pid":…,"command":…,"format":…,"mappings":[…],…totals}`.
///
/// Each mapping carries its format's columns: `address`, `kbytes`, `mode`, `mapping` (and `rss`,
/// `dirty` for `-x`), or for `-X`/`-XX` `values` (smaps key to number) and `vmflags`; and the maps
/// fields (`start`, `end`, `perms`, `offset`, `device`, `inode`, `path`). The totals are those of
/// the format's footer: `total_kbytes` (and `total_rss_kbytes`, `total_dirty_kbytes` for `-x`;
/// `writeable_private_kbytes`, `shared_kbytes` for `-d`), or `totals` by smaps key.
pub fn dump_json(view: &ProcessView, format: PmapFormat, dump: &ProcessDump) -> Value {
    let mut object = json!({
        "type": "dump",
        "pid": view.pid,
        "command": escape_bytes(view.header),
        "format": format_name(format),
    });
    let fields = object.as_object_mut().expect("built as an object");
    match &dump.table {
        Table::Maps { rows, totals } => {
            let mappings: Vec<Value> = rows.iter().map(|r| maps_row(view, format, r)).collect();
            fields.insert("mappings".into(), mappings.into());
            maps_totals(format, totals, fields);
        }
        Table::Smaps { rows } => {
            let mappings: Vec<Value> = rows.iter().map(|r| smaps_row(view, r)).collect();
            fields.insert("mappings".into(), mappings.into());
            let mut totals = Map::new();
            for row in rows {
                for (key, value) in &row.values {
                    let key = String::from_utf8_lossy(key).into_owned();
                    let sum = totals.get(&key).and_then(Value::as_u64).unwrap_or(0);
                    totals.insert(key, sum.wrapping_add(*value).into());
                }
            }
            fields.insert("totals".into(), Value::Object(totals));
        }
    }
    object
}

fn maps_totals(format: PmapFormat, totals: &Totals, fields: &mut Map<String, Value>) {
    fields.insert("total_kbytes".into(), (totals.mapped() >> 10).into());
    match format {
        PmapFormat::Extended => {
            fields.insert("total_rss_kbytes".into(), totals.rss.into());
            fields.insert("total_dirty_kbytes".into(), totals.dirty.into());
        }
        PmapFormat::Device => {
            fields.insert(
                "writeable_private_kbytes".into(),
                (totals.private_writeable >> 10).into(),
            );
            fields.insert("shared_kbytes".into(), (totals.shared >> 10).into());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Device, Perms, SmapsEntry, SmapsLayout},
        render::{
            pmap::{PmapOptions, PmapRun},
            smaps::synthesize,
        },
    };

    fn mappings() -> [Mapping; 2] {
        [
            Mapping {
                start: 0x1000,
                end: 0x3000,
                perms: Perms {
                    read: true,
                    write: false,
                    exec: true,
                    shared: false,
                },
                offset: 0x2000,
                device: Device {
                    major: 0xfe,
                    minor: 0,
                },
                inode: 77,
                name: b"/usr/bin/x".to_vec(),
            },
            Mapping {
                start: 0x7000,
                end: 0x8000,
                perms: Perms {
                    read: true,
                    write: true,
                    exec: false,
                    shared: false,
                },
                offset: 0,
                device: Device::default(),
                inode: 0,
                name: b"[heap]".to_vec(),
            },
        ]
    }

    fn dump(format: PmapFormat, smaps: &[SmapsEntry]) -> Value {
        let mappings = mappings();
        let view = ProcessView {
            pid: 9,
            header: b"x --flag",
            start_stack: 0,
            sysv_shm_minor: None,
            mappings: &mappings,
        };
        let layout = SmapsLayout::default();
        let opts = PmapOptions {
            format,
            ..PmapOptions::default()
        };
        let rendered = PmapRun::new(opts, &layout).process(&view, smaps);
        dump_json(&view, format, &rendered)
    }

    /// The heap's smaps lines in the default layout, with 4 kB resident, dirty and private.
    fn heap_smaps() -> Vec<SmapsEntry> {
        let heap = &mappings()[1];
        let mut details = String::from_utf8(synthesize(&SmapsLayout::default(), heap)).unwrap();
        for key in ["Rss", "Pss", "Private_Dirty"] {
            let zero = format!("{:<16}{:>8} kB", format!("{key}:"), 0);
            let four = format!("{:<16}{:>8} kB", format!("{key}:"), 4);
            details = details.replace(&zero, &four);
        }
        details = details.replace("VmFlags: rd wr mr mw me", "VmFlags: rd wr mr mw me ac");
        vec![SmapsEntry {
            start: heap.start,
            end: heap.end,
            details: details.into_bytes(),
        }]
    }

    #[test]
    fn carries_pmap_columns_and_raw_fields_as_numbers() {
        let dump = dump(PmapFormat::Default, &[]);
        assert_eq!(dump["total_kbytes"], 12);
        assert_eq!(dump["command"], "x --flag");
        assert_eq!(dump["format"], "default");
        let first = &dump["mappings"][0];
        assert_eq!(first["address"], "0000000000001000");
        assert_eq!(first["kbytes"], 8);
        assert_eq!(first["mode"], "r-x--");
        assert_eq!(first["mapping"], "x");
        assert_eq!(first["offset"], 0x2000);
        assert_eq!(first["device"], "fe:00");
        assert_eq!(dump["mappings"][1]["mapping"], "[ anon ]");
        assert_eq!(dump["mappings"][1]["path"], "[heap]");
    }

    #[test]
    fn extended_and_device_dumps_carry_their_columns_and_footers() {
        let dump = dump(PmapFormat::Extended, &heap_smaps());
        let heap = &dump["mappings"][1];
        assert_eq!(
            (heap["rss"].as_u64(), heap["dirty"].as_u64()),
            (Some(4), Some(4))
        );
        // The file mapping has no smaps lines here: what is not known is zero.
        assert_eq!(dump["mappings"][0]["rss"], 0);
        assert_eq!(dump["total_rss_kbytes"], 4);
        assert_eq!(dump["total_dirty_kbytes"], 4);

        let dump = self::dump(PmapFormat::Device, &[]);
        assert_eq!(dump["writeable_private_kbytes"], 4);
        assert_eq!(dump["shared_kbytes"], 0);
        assert_eq!(dump["total_kbytes"], 12);
    }

    #[test]
    fn smaps_dumps_carry_values_by_key_and_their_totals() {
        let dump = dump(PmapFormat::AllSmaps, &heap_smaps());
        let heap = &dump["mappings"][1];
        assert_eq!(heap["values"]["Rss"], 4);
        assert_eq!(heap["values"]["Private_Dirty"], 4);
        assert_eq!(heap["vmflags"], json!(["rd", "wr", "mr", "mw", "me", "ac"]));
        assert_eq!(heap["mapping"], "[heap]");
        // Both mappings count: the file mapping, without smaps lines, with its size alone.
        assert_eq!(dump["totals"]["Size"], 12);
        assert_eq!(dump["totals"]["Rss"], 4);
        // -X leaves out what pmap deems unimportant, and the flags.
        let dump = self::dump(PmapFormat::Smaps, &heap_smaps());
        assert!(dump["mappings"][1]["values"]["Private_Dirty"].is_null());
        assert!(dump["mappings"][1]["vmflags"].is_null());
        assert_eq!(dump["totals"]["Rss"], 4);
    }
}

//! Dumps as JSON objects: pmap's columns as fields (numbers as numbers), plus the raw fields of
//! each mapping's `/proc/PID/maps` line.

use serde_json::{Value, json};

use super::{
    events::escape_bytes,
    pmap::{PmapOptions, ProcessView, rows},
};

/// One dump: `{"type":"dump","pid":…,"command":…,"mappings":[…],"total_kbytes":…}`. Each
/// mapping carries pmap's columns (`address`, `kbytes`, `mode`, `mapping`) and the maps fields
/// (`start`, `end`, `perms`, `offset`, `device`, `inode`, `path`).
pub fn dump_json(view: &ProcessView, opts: &PmapOptions) -> Value {
    let (rows, total) = rows(view, opts);
    let mappings: Vec<Value> = rows
        .iter()
        .map(|row| {
            let m = &view.mappings[row.mapping];
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
            json!({
                "address": format!("{:016x}", row.start),
                "kbytes": row.size >> 10,
                "mode": String::from_utf8_lossy(&row.mode),
                "mapping": escape_bytes(row.name.trim_ascii_start()),
                "start": m.start,
                "end": m.end,
                "perms": perms,
                "offset": m.offset,
                "device": format!("{:02x}:{:02x}", m.device.major, m.device.minor),
                "inode": m.inode,
                "path": escape_bytes(&m.name),
            })
        })
        .collect();
    json!({
        "type": "dump",
        "pid": view.pid,
        "command": escape_bytes(view.header),
        "mappings": mappings,
        "total_kbytes": total >> 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Device, Mapping, Perms};

    #[test]
    fn carries_pmap_columns_and_raw_fields_as_numbers() {
        let mappings = [
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
        ];
        let view = ProcessView {
            pid: 9,
            header: b"x --flag",
            start_stack: 0,
            sysv_shm_minor: None,
            mappings: &mappings,
        };
        let dump = dump_json(&view, &PmapOptions::default());
        assert_eq!(dump["total_kbytes"], 12);
        assert_eq!(dump["command"], "x --flag");
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
}

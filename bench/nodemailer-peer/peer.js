#!/usr/bin/env node
// nodemailer-peer: the nodemailer side of smtpkit's throughput comparison (bench/compare.sh).
//
// One pooled transport (`pool: true`, maxConnections = --concurrency, maxMessages = Infinity so
// a connection is never closed after 100 messages), no auth. All --count messages are handed
// to sendMail at once, so the pool's queue never runs dry: nodemailer sends as fast as it can.
// The message is a prebuilt raw message of exactly --size bytes (`raw` + `envelope`, the same
// as lettre-peer's send_raw and smtpkit bench's prebuilt message: no MIME building is timed).
// --tls: implicit TLS (`secure: true`), trusting --ca-file.
//
// Prints one JSON line: sent, failed, seconds, msgs_per_sec, cpu_us_per_msg (process.cpuUsage),
// mode, concurrency, size, first_error. Exit 75 when a message failed, 64 on bad arguments.
'use strict';

const fs = require('fs');
const nodemailer = require('nodemailer');

const USAGE = 'usage: peer.js --host H --port P [--count N] [--concurrency C] [--size BYTES] [--tls --ca-file PEM]';

function parseArgs(argv) {
    const o = { host: '', port: 0, count: 1000, concurrency: 1, size: 2048, tls: false, caFile: null };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
            return argv[++i];
        };
        switch (a) {
            case '--host': o.host = value(); break;
            case '--port': o.port = parseInt(value(), 10); break;
            case '--count': o.count = parseInt(value(), 10); break;
            case '--concurrency': o.concurrency = parseInt(value(), 10); break;
            case '--size': o.size = parseInt(value(), 10); break;
            case '--tls': o.tls = true; break;
            case '--ca-file': o.caFile = value(); break;
            default: throw new Error(`unknown argument ${a}\n${USAGE}`);
        }
    }
    if (!o.host || !(o.port > 0)) throw new Error(`--host and --port are required\n${USAGE}`);
    if (!(o.count >= 1) || !(o.concurrency >= 1) || !(o.size >= 200)) {
        throw new Error('--count and --concurrency must be >= 1, --size >= 200');
    }
    return o;
}

// A plain ASCII message of exactly `size` bytes (headers included), CRLF lines of 78 bytes:
// the same generator as lettre-peer's make_message.
function makeMessage(size) {
    const parts = [
        'From: <peer@nodemailer-peer.test>\r\nTo: <sink@nodemailer-peer.test>\r\n' +
            'Subject: nodemailer-peer bench\r\nMessage-ID: <1@nodemailer-peer.test>\r\n\r\n',
    ];
    let len = parts[0].length;
    let fill = 'a'.charCodeAt(0);
    while (len + 78 <= size) {
        parts.push(String.fromCharCode(fill).repeat(76) + '\r\n');
        len += 78;
        fill = fill === 'z'.charCodeAt(0) ? 'a'.charCodeAt(0) : fill + 1;
    }
    const rest = size - len;
    if (rest >= 2) parts.push('q'.repeat(rest - 2) + '\r\n');
    const m = Buffer.from(parts.join(''), 'ascii');
    if (m.length !== size) throw new Error(`message is ${m.length} bytes, not ${size}`);
    return m;
}

async function main() {
    let o;
    try {
        o = parseArgs(process.argv.slice(2));
    } catch (e) {
        console.error(e.message);
        process.exit(64);
    }
    const options = {
        pool: true,
        host: o.host,
        port: o.port,
        secure: o.tls,
        ignoreTLS: !o.tls, // plain rows: no STARTTLS even if offered (smtp-sink offers none)
        maxConnections: o.concurrency,
        maxMessages: Infinity,
        name: 'nodemailer-peer.test',
        connectionTimeout: 30000,
        greetingTimeout: 30000,
        socketTimeout: 30000,
    };
    if (o.tls) {
        options.tls = { rejectUnauthorized: true };
        if (o.caFile) options.tls.ca = fs.readFileSync(o.caFile);
    }
    const transport = nodemailer.createTransport(options);
    const raw = makeMessage(o.size);
    const envelope = { from: 'peer@nodemailer-peer.test', to: ['sink@nodemailer-peer.test'] };

    let sent = 0;
    let failed = 0;
    let firstError = null;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const all = [];
    for (let i = 0; i < o.count; i++) {
        all.push(
            transport.sendMail({ envelope, raw }).then(
                () => { sent++; },
                (e) => { failed++; if (firstError === null) firstError = String(e && e.message || e); },
            ),
        );
    }
    await Promise.all(all);
    const secs = Math.max(Number(process.hrtime.bigint() - t0) / 1e9, 1e-9);
    const cpu = process.cpuUsage(cpu0);
    transport.close();
    console.log(JSON.stringify({
        sent,
        failed,
        seconds: secs,
        msgs_per_sec: sent / secs,
        cpu_us_per_msg: sent > 0 ? (cpu.user + cpu.system) / sent : null,
        mode: o.tls ? 'pool-tls' : 'pool',
        concurrency: o.concurrency,
        size: raw.length,
        nodemailer: require('nodemailer/package.json').version,
        first_error: firstError,
    }));
    process.exitCode = failed > 0 || sent === 0 ? 75 : 0;
}

main().catch((e) => {
    console.error(e && e.stack || e);
    process.exit(70);
});

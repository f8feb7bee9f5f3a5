#!/usr/bin/env python3
"""Writes Master.csv: a Dutch company's ordinary traffic, 11-28 June 2011, with a 2011-style PBX hack.

The shape of the case in the ruling (see the README): from Saturday 11 June 2011, one hacked extension
calls East Timor (+670) day and night for 17 days, averaging about EUR 430 an hour at EUR 1.45 a
minute, several channels at once. Asterisk cdr_csv, 18 columns, local time Europe/Amsterdam.
Deterministic: `python3 generate.py` always writes the same file.
"""
import datetime as dt
import random

rng = random.Random(2011)
START = dt.datetime(2011, 6, 11, 0, 0, 0)  # Saturday
DAYS = 18  # 11 June to 28 June; the hack runs until 10:19 on the 28th
FOUND = dt.datetime(2011, 6, 28, 10, 19, 0)
rows = []
seq = 0


def q(s):
    return '"' + s.replace('"', '""') + '"'


def add(src, dst, ctx, ch, dch, start, ring, talk):
    global seq
    seq += 1
    ans = start + dt.timedelta(seconds=ring) if talk > 0 else None
    end = start + dt.timedelta(seconds=ring + talk)
    f = lambda t: t.strftime("%Y-%m-%d %H:%M:%S")
    uid = f"{int((start - dt.datetime(1970, 1, 1)).total_seconds())}.{seq}"
    rows.append((end, ",".join([
        q("bouwbedrijf"), q(src), q(dst), q(ctx), q(f'"{src}" <{src}>'), q(ch), q(dch), q("Dial"),
        q(f"SIP/kpn/{dst},60"), q(f(start)), q(f(ans)) if ans else "", q(f(end)),
        str(ring + talk), str(talk), q("ANSWERED" if talk else "NO ANSWER"), q("DOCUMENTATION"), q(uid), q(""),
    ])))


# Ordinary traffic: 12 extensions, office hours on weekdays.
national = ["0201234567", "0104567890", "0302345678", "0612345678", "0623456789", "0401234567", "0800 0432"]
international = ["0032475123456", "0049301234567", "00442079460000"]
for day in range(DAYS):
    date = START + dt.timedelta(days=day)
    if date.weekday() >= 5:
        continue
    for _ in range(rng.randint(70, 110)):
        t = date + dt.timedelta(hours=8, seconds=rng.randint(0, 9 * 3600))
        ext = str(rng.randint(201, 212))
        dst = rng.choice(national if rng.random() < 0.9 else international)
        talk = 0 if rng.random() < 0.25 else int(rng.lognormvariate(4.4, 1.0))
        add(ext, dst, "from-internal", f"SIP/{ext}-{seq:08x}", f"SIP/kpn-{seq:08x}", t, rng.randint(3, 20), talk)
    for _ in range(rng.randint(20, 40)):  # inbound
        t = date + dt.timedelta(hours=8, seconds=rng.randint(0, 9 * 3600))
        ext = str(rng.randint(201, 212))
        add(rng.choice(national[:6]), ext, "from-trunk", f"SIP/kpn-{seq:08x}", f"SIP/{ext}-{seq:08x}", t, 4,
            int(rng.lognormvariate(4.2, 0.9)))

# The hack: extension 213 (an unused extension with an easy PIN), 5-6 channels to East Timor.
channels = [START + dt.timedelta(hours=23, minutes=5 + 3 * c) for c in range(6)]
for c, t in enumerate(channels):
    while t < FOUND:
        talk = rng.randint(1500, 3500)
        dst = "00670" + str(7700000 + rng.randint(0, 99999))
        add("213", dst, "from-internal", f"SIP/213-{seq:08x}", f"SIP/kpn-{seq:08x}", t, rng.randint(5, 12), talk)
        t += dt.timedelta(seconds=talk + rng.randint(20, 400))
        # by day the attackers keep fewer channels busy
        if 8 <= t.hour < 18 and t.weekday() < 5 and c >= 4:
            t += dt.timedelta(hours=10)

rows.sort()
with open("Master.csv", "w") as out:
    for _, line in rows:
        out.write(line + "\n")
print(f"wrote Master.csv: {len(rows)} calls")

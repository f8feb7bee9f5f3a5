#!/usr/bin/env python3
"""Deterministic generator of a realistic Asterisk cdr_csv file and a matching A-Z deck.

    python3 bench/gen-asterisk.py N OUT_MASTER_CSV OUT_DECK_CSV [--seed S]

Master.csv: N rows of the 18-column cdr_csv layout (accountcode, src, dst, dcontext, clid,
channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec, disposition,
amaflags, uniqueid, userfield). Strings are quoted (quotes doubled), integers unquoted, and an
unanswered call's `answer` is empty and unquoted, as Asterisk writes it. Times are local
(Europe/Amsterdam) over March 2024, in order; about 25% of calls are not answered.

Traffic, dialled the Dutch way from a PBX in the Netherlands:
  ~45% outbound national (0 + national number: geographic, mobile 06, 085/088, 0800, 0900),
  ~22% outbound international (00 + country code + number; ~3% of those to high-risk ranges),
  ~15% internal (extension to extension), ~17% inbound from the trunk to an extension or DID,
  and a few 112 and *97 calls.

The deck: 500 rows `prefix,destination,rate_per_minute,connection_fee,initial_increment_s,
subsequent_increment_s`, prefixes of 1 to 6 digits, rates with 4 decimals, increments 60/60,
30/6 or 1/1; every country code dialled has a row, so nearly every outbound call is rated.

Python 3.11 standard library only. The same N and seed always give the same files.
"""

import bisect
import datetime
import random
import sys

SEED = 20240301

# ---------------------------------------------------------------------------------------------
# Destinations dialled from the Netherlands: (weight, cc, [(weight, leading digits, digits after)])
# The number is cc + lead + random digits. Weights are relative within the international mix.
INTERNATIONAL = [
    (120, "49", [(50, "30", 8), (20, "89", 8), (15, "40", 8), (60, "151", 8), (40, "160", 8), (40, "176", 8)]),
    (100, "32", [(40, "2", 7), (20, "3", 7), (20, "9", 7), (40, "47", 7), (30, "48", 7), (30, "49", 7)]),
    (70, "44", [(40, "20", 8), (15, "121", 7), (40, "7", 9), (3, "70", 8), (2, "909", 7)]),
    (60, "33", [(40, "1", 8), (20, "4", 8), (40, "6", 8), (15, "7", 8)]),
    (45, "34", [(40, "6", 8), (20, "91", 7), (20, "93", 7), (10, "7", 8)]),
    (35, "39", [(50, "3", 9), (30, "06", 8), (10, "02", 8)]),
    (30, "48", [(60, "5", 8), (30, "6", 8), (20, "22", 7)]),
    (30, "90", [(60, "5", 9), (30, "212", 7)]),
    (30, "212", [(70, "6", 8), (20, "5", 8)]),
    (25, "1", [(20, "212", 7), (20, "415", 7), (15, "646", 7), (15, "305", 7), (10, "416", 7), (3, "876", 7), (2, "809", 7)]),
    (20, "597", [(60, "8", 6), (30, "4", 6)]),
    (15, "5999", [(100, "", 7)]),
    (15, "62", [(70, "81", 9), (30, "21", 8)]),
    (15, "86", [(70, "13", 9), (20, "18", 9), (10, "10", 8)]),
    (15, "91", [(60, "9", 9), (40, "8", 9)]),
    (15, "41", [(50, "7", 8), (50, "44", 7)]),
    (12, "43", [(50, "66", 8), (50, "1", 7)]),
    (12, "45", [(100, "", 8)]),
    (12, "46", [(60, "7", 8), (40, "8", 7)]),
    (10, "47", [(60, "9", 7), (40, "4", 7)]),
    (10, "351", [(60, "9", 8), (40, "21", 7)]),
    (10, "353", [(60, "8", 8), (40, "1", 7)]),
    (10, "30", [(60, "69", 8), (40, "21", 8)]),
    (10, "7", [(60, "9", 9), (40, "495", 7)]),
    (8, "20", [(70, "1", 9), (30, "2", 8)]),
    (8, "27", [(70, "8", 8), (30, "11", 7)]),
    (8, "55", [(70, "11", 9), (30, "21", 8)]),
    (8, "61", [(70, "4", 8), (30, "2", 8)]),
    (8, "234", [(100, "80", 8)]),
    (6, "971", [(70, "5", 8), (30, "4", 7)]),
    (6, "380", [(100, "6", 8)]),
    (5, "420", [(100, "6", 8)]),
    (5, "36", [(100, "30", 7)]),
    (5, "40", [(100, "7", 8)]),
    # high-risk and IRSF ranges: a small share of the traffic
    (3, "53", [(80, "5", 7), (20, "7", 7)]),
    (2, "220", [(100, "7", 6)]),
    (2, "224", [(100, "62", 7)]),
    (2, "232", [(100, "76", 6)]),
    (2, "252", [(100, "61", 7)]),
    (2, "670", [(100, "77", 6)]),
    (2, "675", [(100, "7", 7)]),
    (1, "682", [(100, "5", 4)]),
    (1, "683", [(100, "4", 3)]),
    (1, "688", [(100, "90", 4)]),
    (2, "371", [(70, "2", 7), (30, "90", 6)]),
    (1, "870", [(100, "7", 8)]),
    (1, "881", [(60, "6", 8), (40, "7", 8)]),
    (1, "882", [(100, "16", 7)]),
    (1, "883", [(100, "5", 9)]),
    (1, "1876", [(100, "", 7)]),
    (1, "1268", [(100, "", 7)]),
    (1, "1649", [(100, "", 7)]),
    (1, "979", [(100, "", 8)]),  # international premium rate: not in the deck (unrated)
]
# (Both +1 876 and the "1" row with lead 876 exist on purpose: different shares, same prefixes.)

# National forms: (weight, lead after the 0, digits after the lead)
NATIONAL = [
    (60, "61", 7), (60, "62", 7), (50, "63", 7), (40, "64", 7), (30, "65", 7), (10, "68", 7),  # mobile 06
    (70, "20", 7), (45, "10", 7), (35, "30", 7), (30, "70", 7), (20, "40", 7), (15, "50", 7),
    (10, "13", 7), (10, "15", 7), (10, "23", 7), (10, "24", 7), (10, "26", 7), (10, "33", 7),
    (10, "35", 7), (10, "43", 7), (10, "45", 7), (10, "53", 7), (10, "55", 7), (10, "58", 7),
    (10, "71", 7), (10, "72", 7), (10, "73", 7), (10, "74", 7), (10, "76", 7), (10, "77", 7),
    (8, "113", 6), (8, "162", 6), (8, "172", 6), (8, "251", 6), (8, "318", 6), (8, "418", 6),
    (8, "492", 6), (8, "546", 6), (8, "575", 6), (8, "593", 6),
    (25, "85", 7), (20, "88", 7),  # VoIP and company numbers
    (15, "800", 4), (5, "800", 7),  # toll free
    (6, "900", 4), (4, "900", 7), (3, "906", 7), (2, "909", 4),  # premium
]


def cumulative(items):
    """Cumulative weights, for picking with bisect."""
    total, cum = 0, []
    for w in items:
        total += w
        cum.append(total)
    return cum


# ---------------------------------------------------------------------------------------------
# The deck

# Assigned country calling codes (ITU-T E.164 list, without spare codes).
COUNTRY_CODES = (
    "1 7 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 "
    "64 65 66 81 82 84 86 90 91 92 93 94 95 98 211 212 213 216 218 220 221 222 223 224 225 226 "
    "227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 "
    "250 251 252 253 254 255 256 257 258 260 261 262 263 264 265 266 267 268 269 290 291 297 298 "
    "299 350 351 352 353 354 355 356 357 358 359 370 371 372 373 374 375 376 377 378 380 381 382 "
    "383 385 386 387 389 420 421 423 500 501 502 503 504 505 506 507 508 509 590 591 592 593 594 "
    "595 596 597 598 599 670 672 673 674 675 676 677 678 679 680 681 682 683 685 686 687 688 689 "
    "690 691 692 850 852 853 855 856 870 880 881 882 883 886 960 961 962 963 964 965 966 967 968 "
    "970 971 972 973 974 975 976 977 992 993 994 995 996 998"
).split()

HIGH_RISK = {
    "53", "220", "224", "231", "232", "239", "245", "246", "247", "252", "670", "672", "674", "675",
    "677", "678", "679", "682", "683", "686", "688", "690", "691", "692", "870", "881", "882", "883",
    "960", "963", "967",
}
EU = {
    "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
    "350", "351", "352", "353", "354", "356", "357", "358", "359", "370", "371", "372", "385",
    "386", "420", "421", "423",
}

# Sub-prefixes with their own rows: (prefix, destination, kind)
SPECIAL = [
    ("316", "Netherlands mobile", "mobile"), ("3185", "Netherlands VoIP", "fixed"),
    ("3188", "Netherlands corporate", "fixed"), ("31800", "Netherlands toll free", "free"),
    ("31900", "Netherlands premium 0900", "premium"), ("31906", "Netherlands premium 0906", "premium"),
    ("31909", "Netherlands premium 0909", "premium"), ("3120", "Netherlands Amsterdam", "fixed"),
    ("3110", "Netherlands Rotterdam", "fixed"), ("3197", "Netherlands M2M", "mobile"),
    ("4915", "Germany mobile", "mobile"), ("4916", "Germany mobile", "mobile"),
    ("4917", "Germany mobile", "mobile"), ("4930", "Germany Berlin", "fixed"),
    ("4989", "Germany Munich", "fixed"), ("3247", "Belgium mobile Proximus", "mobile"),
    ("3248", "Belgium mobile Telenet", "mobile"), ("3249", "Belgium mobile Orange", "mobile"),
    ("447", "United Kingdom mobile", "mobile"), ("4470", "United Kingdom personal", "premium"),
    ("449", "United Kingdom premium", "premium"), ("4420", "United Kingdom London", "fixed"),
    ("336", "France mobile", "mobile"), ("337", "France mobile", "mobile"),
    ("346", "Spain mobile", "mobile"), ("347", "Spain mobile", "mobile"), ("393", "Italy mobile", "mobile"),
    ("485", "Poland mobile", "mobile"), ("486", "Poland mobile", "mobile"), ("905", "Turkey mobile", "mobile"),
    ("2126", "Morocco mobile", "mobile"), ("2127", "Morocco mobile", "mobile"),
    ("5978", "Suriname mobile", "mobile"), ("5999", "Curacao", "fixed"), ("628", "Indonesia mobile", "mobile"),
    ("861", "China mobile", "mobile"), ("919", "India mobile", "mobile"), ("918", "India mobile", "mobile"),
    ("417", "Switzerland mobile", "mobile"), ("4366", "Austria mobile", "mobile"),
    ("467", "Sweden mobile", "mobile"), ("479", "Norway mobile", "mobile"), ("474", "Norway mobile", "mobile"),
    ("3519", "Portugal mobile", "mobile"), ("3538", "Ireland mobile", "mobile"), ("3069", "Greece mobile", "mobile"),
    ("79", "Russia mobile", "mobile"), ("77", "Kazakhstan", "fixed"), ("201", "Egypt mobile", "mobile"),
    ("278", "South Africa mobile", "mobile"), ("5511", "Brazil Sao Paulo", "fixed"), ("614", "Australia mobile", "mobile"),
    ("23480", "Nigeria mobile", "mobile"), ("9715", "UAE mobile", "mobile"), ("3806", "Ukraine mobile", "mobile"),
    ("4206", "Czech Republic mobile", "mobile"), ("407", "Romania mobile", "mobile"),
    ("535", "Cuba mobile", "hot"), ("2207", "Gambia mobile", "hot"), ("22462", "Guinea mobile", "hot"),
    ("23276", "Sierra Leone mobile", "hot"), ("25261", "Somalia mobile", "hot"),
    ("67077", "East Timor mobile", "hot"), ("6757", "Papua New Guinea mobile", "hot"),
    ("37190", "Latvia premium", "hot"), ("3712", "Latvia mobile", "mobile"),
    ("8707", "Inmarsat", "sat"), ("8816", "Iridium", "sat"), ("8817", "Iridium", "sat"),
    ("88216", "Thuraya", "sat"), ("8835", "International networks", "sat"),
    ("1876", "Jamaica", "hot"), ("1268", "Antigua and Barbuda", "hot"), ("1649", "Turks and Caicos", "hot"),
    ("1284", "British Virgin Islands", "hot"), ("1809", "Dominican Republic", "fixed"),
    ("1829", "Dominican Republic", "fixed"), ("1849", "Dominican Republic", "fixed"),
    ("1416", "Canada Toronto", "fixed"), ("1212", "USA New York", "fixed"),
]

# Heavy-traffic countries whose ranges are split further to fill the deck to 500 rows.
SPLIT = ["316", "4915", "4916", "4917", "447", "336", "346", "393", "3247", "3248", "485", "905",
         "3120", "3110", "4930", "2126", "628", "861", "919", "79", "1212", "1416", "614", "5511"]


def rate_for(rng, kind):
    """(rate per minute, connection fee, initial, subsequent) for a kind of destination."""
    lo, hi, fee_p, incs = {
        "nl": (0.0050, 0.0150, 0.0, [(60, 60), (1, 1)]),
        "eu": (0.0080, 0.0300, 0.1, [(30, 6), (60, 60), (1, 1)]),
        "fixed": (0.0080, 0.0600, 0.1, [(30, 6), (60, 60), (1, 1)]),
        "mobile": (0.0200, 0.1200, 0.15, [(30, 6), (60, 60), (1, 1)]),
        "free": (0.0000, 0.0000, 0.0, [(60, 60)]),
        "premium": (0.3500, 1.2000, 0.5, [(60, 60), (30, 6)]),
        "world": (0.0400, 0.4500, 0.2, [(60, 60), (30, 6)]),
        "hot": (0.8000, 3.5000, 0.6, [(60, 60)]),
        "sat": (3.5000, 9.9000, 0.8, [(60, 60)]),
    }[kind]
    rate = round(rng.uniform(lo, hi), 4)
    fee = round(rng.choice([0.0150, 0.0250, 0.0500, 0.1000, 0.1234]), 4) if rng.random() < fee_p else 0.0
    initial, subsequent = rng.choice(incs)
    return rate, fee, initial, subsequent


def make_deck(rng, rows=500):
    deck = {}
    for cc in COUNTRY_CODES:
        kind = "nl" if cc == "31" else "hot" if cc in HIGH_RISK else "eu" if cc in EU else "world"
        if cc in ("870", "881", "882", "883"):
            kind = "sat"
        deck[cc] = ("Country +" + cc, kind)
    for prefix, name, kind in SPECIAL:
        deck[prefix] = (name, kind)
    while len(deck) < rows:
        base = rng.choice(SPLIT)
        extra = 6 - len(base)
        if extra < 1:
            continue
        p = base + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, extra)))
        if p not in deck:
            deck[p] = (deck[base][0] + " range " + p[len(base):], deck[base][1])
    assert len(deck) == rows, len(deck)
    out = ["prefix,destination,rate_per_minute,connection_fee,initial_increment_s,subsequent_increment_s"]
    for prefix in sorted(deck):
        name, kind = deck[prefix]
        rate, fee, ini, sub = rate_for(rng, kind)
        out.append(f"{prefix},{name},{rate:.4f},{fee:.4f},{ini},{sub}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The CDRs

FIRST = ["Jan", "Anna", "Pieter", "Sanne", "Mohamed", "Fatima", "Kees", "Emma", "Daan", "Lotte",
         "Ahmed", "Noor", "Joost", "Sophie", "Bram", "Eva", "Tim", "Lisa", "Ruben", "Iris"]
LAST = ["de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser", "Smit",
        "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "Yilmaz", "El Amrani"]
TRUNKS = ["trunk-kpn", "trunk-voys", "trunk-telfort", "trunk-sipgate"]


def q(s):
    """A quoted cdr_csv string field."""
    return '"' + s.replace('"', '""') + '"'


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    seed = SEED
    for a in argv[1:]:
        if a.startswith("--seed="):
            seed = int(a.split("=", 1)[1])
    if len(args) != 3:
        sys.stderr.write(__doc__)
        return 2
    n = int(args[0])
    master, deck_path = args[1], args[2]
    rng = random.Random(seed)
    with open(deck_path, "w", newline="\n") as f:
        f.write(make_deck(random.Random(seed + 1)))

    rnd = rng.random
    randrange = rng.randrange
    getrandbits = rng.getrandbits
    bis = bisect.bisect

    def pick(cum):
        return bis(cum, rnd() * cum[-1])
    expo = rng.expovariate

    # Accounts: 40 tenants of a hosted PBX, each with its own extensions, users and outside number.
    accounts = []
    for a in range(40):
        name = ["acme", "bakkerij-visser", "tandarts-utrecht", "hotel-zeezicht", "advocaten-smit"][a] if a < 5 else f"klant{a:04d}"
        exts = [str(e) for e in range(200, 200 + 5 + randrange(60))]
        users = {e: f'"{rng.choice(FIRST)} {rng.choice(LAST)}" <{e}>' for e in exts}
        trunk = rng.choice(TRUNKS)
        did_base = "31" + rng.choice(["20", "10", "30", "70", "40", "85"]) + str(1000000 + randrange(8999000))[:5]
        accounts.append((name, exts, users, trunk, did_base))
    acc_cum = cumulative([max(1, 60 - i) for i in range(len(accounts))])

    intl_cum = cumulative([w for w, _, _ in INTERNATIONAL])
    intl_sub = [(cumulative([w for w, _, _ in subs]), subs, cc) for _, cc, subs in INTERNATIONAL]
    nat_cum = cumulative([w for w, _, _ in NATIONAL])
    pow10 = [10**k for k in range(16)]

    # Local times: March 2024 (with the DST change on the 31st), in order, more by day than by night.
    days = [(datetime.date(2024, 3, 1) + datetime.timedelta(days=d)).isoformat() + " " for d in range(33)]
    hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    epoch0 = int(datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))).timestamp())
    month = 31 * 86400
    # busy-hour shape: weight per hour of the day
    hour_w = [1, 1, 1, 1, 1, 2, 4, 10, 30, 45, 50, 45, 35, 40, 45, 45, 40, 30, 15, 8, 5, 4, 2, 1]
    hour_cum = cumulative(hour_w)

    def ts(t):
        return days[t // 86400] + hms[t % 86400]

    def digits(k):
        return str(pow10[k] + randrange(pow10[k]))[1:] if k else ""

    out = open(master, "w", newline="\n", buffering=1 << 20)
    buf = []
    seq = 0
    for i in range(n):
        # spread the rows over the month in order; the hour within a day follows the busy-hour shape
        day = i * 31 // n
        # position within the day's rows gives the time of day, bent towards office hours
        target = (i * 31 % n) / n * hour_cum[-1]
        hour = 0
        while hour_cum[hour] < target:
            hour += 1
        start = day * 86400 + hour * 3600 + randrange(3600)
        name, exts, users, trunk, did_base = accounts[pick(acc_cum)]
        ext = exts[randrange(len(exts))]
        r = rnd()
        context = "from-internal"
        app = "Dial"
        if r < 0.45:
            nw = NATIONAL[pick(nat_cum)]
            dst = "0" + nw[1] + digits(nw[2])
            src, clid = ext, users[ext]
            channel = f"PJSIP/{ext}-{getrandbits(32):08x}"
            dstchannel = f"PJSIP/{trunk}-{getrandbits(32):08x}"
            lastdata = f"PJSIP/{dst}@{trunk},60,tT"
        elif r < 0.67:
            k = pick(intl_cum)
            sub_cum, subs, cc = intl_sub[k]
            _, lead, rest = subs[pick(sub_cum)]
            dst = "00" + cc + lead + digits(rest)
            src, clid = ext, users[ext]
            channel = f"PJSIP/{ext}-{getrandbits(32):08x}"
            dstchannel = f"PJSIP/{trunk}-{getrandbits(32):08x}"
            lastdata = f"PJSIP/{dst}@{trunk},120,tT"
        elif r < 0.82:
            dst = exts[randrange(len(exts))]
            src, clid = ext, users[ext]
            channel = f"PJSIP/{ext}-{getrandbits(32):08x}"
            dstchannel = f"PJSIP/{dst}-{getrandbits(32):08x}"
            lastdata = f"PJSIP/{dst},30"
        elif r < 0.996:
            # inbound: caller id as the carrier sends it, to the DID or straight to an extension
            context = "from-trunk"
            nw = NATIONAL[pick(nat_cum)]
            src = "0" + nw[1] + digits(nw[2]) if rnd() < 0.8 else "+" + "4930" + digits(8)
            clid = f'"{src}" <{src}>'
            dst = did_base + digits(2) if rnd() < 0.4 else ext
            channel = f"PJSIP/{trunk}-{getrandbits(32):08x}"
            dstchannel = f"PJSIP/{ext}-{getrandbits(32):08x}"
            lastdata = f"PJSIP/{ext},30"
        elif r < 0.998:
            dst = "112"
            src, clid = ext, users[ext]
            channel = f"PJSIP/{ext}-{getrandbits(32):08x}"
            dstchannel = f"PJSIP/{trunk}-{getrandbits(32):08x}"
            lastdata = f"PJSIP/112@{trunk},,tT"
        else:
            dst = "*97"
            src, clid = ext, users[ext]
            channel = f"PJSIP/{ext}-{getrandbits(32):08x}"
            dstchannel = ""
            app, lastdata = "VoiceMailMain", "@default"
        ring = 2 + randrange(25)
        a = rnd()
        if a < 0.75:
            billsec = 1 + int(expo(1 / 150.0))
            if billsec > 14400:
                billsec = 14400
            duration = ring + billsec
            disposition = "ANSWERED"
            answer = q(ts(start + ring))
        else:
            billsec = 0
            duration = ring + (randrange(30) if a < 0.95 else 0)
            disposition = "NO ANSWER" if a < 0.92 else "BUSY" if a < 0.97 else "FAILED"
            answer = ""
        seq += 1
        uniqueid = f"{epoch0 + start}.{seq}"
        buf.append(
            f'{q(name)},{q(src)},{q(dst)},"{context}",{q(clid)},"{channel}","{dstchannel}","{app}",'
            f'{q(lastdata)},"{ts(start)}",{answer},"{ts(start + duration)}",{duration},{billsec},'
            f'"{disposition}","DOCUMENTATION","{uniqueid}",""\n'
        )
        if len(buf) >= 20000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Independent labelled test month for tollguard (Asterisk cdr_csv, Europe/Amsterdam local time).

Written apart from tollguard-sim (not a port of it), to judge the built-in policy on shapes the
simulator does not make: ~150 Dutch business accounts on one carrier, ordinary traffic with
diurnal/weekly/holiday patterns, plus variants of every fraud family (other countries and ranges,
office-hour and evening attacks, one channel at a time, attacks on countries the account already
calls, drips under a day's budget, late wangiri callbacks) and honest look-alikes (two-way traffic
with high-risk places, satellite users, diaspora weeks, night shifts). Deterministic for a given
--seed and --start. Run by bench/independent.sh:

  python3 gen.py --seed 11 --start 2026-03-16 --deck rates.csv --out month-11
"""
import argparse
import datetime as dt
import math
import os
import random
import shutil
from zoneinfo import ZoneInfo

AMS = ZoneInfo("Europe/Amsterdam")

# ----------------------------------------------------------------------------- randomness


def R(seed, *keys):
    return random.Random("/".join(str(k) for k in (seed,) + keys))


def poisson(rng, lam):
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    L, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= L:
            return k
        k += 1


def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


# ----------------------------------------------------------------------------- numbers
# Every generator returns the E.164 digits without '+'; dialled form is built separately.

NL_AREAS = ["10", "13", "15", "20", "23", "24", "26", "30", "33", "35", "36", "38", "40", "43",
            "45", "46", "50", "53", "55", "58", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79"]
US_AREAS = ["212", "646", "312", "415", "617", "713", "202", "305", "404", "206", "303", "512",
            "214", "510", "408", "718", "917", "201", "973", "416", "514", "604"]


def nl_fixed(r):
    a = r.choice(NL_AREAS)
    return "31" + a + str(r.randint(2, 9)) + digits(r, 9 - len(a) - 1)


def nl_mobile(r):
    return "316" + r.choice("1234558") + digits(r, 7)


def nl_company(r):
    return "31" + r.choice(["85", "88"]) + digits(r, 7)


def nl_tollfree(r):
    return "31800" + digits(r, r.choice([4, 7]))


def nl_info(r):  # 0900 helplines (carve-out, medium)
    return "31900" + digits(r, 7)


def intl(country, r):
    c = country
    if c == "DE":
        return r.choice(["4930", "4940", "4989", "4969", "49221", "49211", "49201"]) + digits(r, 7) \
            if r.random() < 0.6 else "49" + r.choice(["151", "160", "170", "176", "152"]) + digits(r, 8)
    if c == "BE":
        x = r.random()
        if x < 0.3:
            return "322" + digits(r, 7)
        if x < 0.45:
            return "323" + digits(r, 7)
        if x < 0.6:
            return "329" + r.choice("23") + digits(r, 6)
        return "324" + r.choice(["7", "8", "9"]) + digits(r, 7)
    if c == "FR":
        return "33" + r.choice("12345") + digits(r, 8) if r.random() < 0.55 \
            else "33" + r.choice("67") + digits(r, 8)
    if c == "ES":
        x = r.random()
        if x < 0.5:
            return "349" + r.choice("1356") + digits(r, 7)
        if x < 0.9:
            return "346" + digits(r, 8)
        return "34902" + digits(r, 6)          # Spanish company numbers (shared cost)
    if c == "IT":
        return "39" + r.choice(["02", "06", "011", "055"]) + digits(r, 7) if r.random() < 0.5 \
            else "393" + digits(r, 9)
    if c == "GB":
        return "44" + r.choice(["20", "161", "121", "113", "131", "117"]) + digits(r, 7) \
            if r.random() < 0.5 else "447" + r.choice("45789") + digits(r, 8)
    if c == "PL":
        return "48" + r.choice(["22", "12", "61", "71"]) + digits(r, 7) if r.random() < 0.5 \
            else "48" + r.choice(["50", "60", "69"]) + digits(r, 7)
    if c == "US":
        return "1" + r.choice(US_AREAS) + str(r.randint(2, 9)) + digits(r, 6)
    if c == "BR":
        return "5511" + r.choice("345") + digits(r, 7) if r.random() < 0.4 else "55119" + digits(r, 8)
    if c == "CN":
        return "86" + r.choice(["10", "21", "755", "20"]) + digits(r, 8) if r.random() < 0.5 \
            else "861" + r.choice("3589") + digits(r, 9)
    if c == "IN":
        return "91" + r.choice(["22", "11", "80", "44"]) + digits(r, 8) if r.random() < 0.3 \
            else "91" + r.choice("9876") + digits(r, 9)
    if c == "MA":
        return "2125" + r.choice(["22", "24", "37"]) + digits(r, 6) if r.random() < 0.4 \
            else "2126" + digits(r, 8)
    if c == "NG":
        return "2341" + digits(r, 7) if r.random() < 0.2 \
            else "234" + r.choice(["803", "806", "703", "813", "906", "805"]) + digits(r, 7)
    if c == "LT":
        return "3705" + digits(r, 7) if r.random() < 0.5 else "3706" + digits(r, 7)
    if c == "LV":
        return "37167" + digits(r, 6) if r.random() < 0.5 else "3712" + digits(r, 7)
    # high-risk and revenue-share ranges (fraud targets and legit special traffic)
    if c == "TL":
        return "670" + r.choice(["77", "78", "73"]) + digits(r, 6)
    if c == "CU":
        return "535" + digits(r, 7) if r.random() < 0.6 else "537" + digits(r, 7)
    if c == "SO":
        return "252" + r.choice(["61", "90", "68"]) + digits(r, 7)
    if c == "GN":
        return "224" + r.choice(["62", "65", "66"]) + digits(r, 7)
    if c == "LR":
        return "231" + r.choice(["77", "88"]) + digits(r, 7)
    if c == "SL":
        return "232" + r.choice(["76", "77", "30", "88"]) + digits(r, 6)
    if c == "NR":
        return "674" + r.choice(["55", "44"]) + digits(r, 5)
    if c == "TO":
        return "676" + r.choice(["77", "84", "87"]) + digits(r, 5)
    if c == "SB":
        return "677" + r.choice(["74", "75", "84"]) + digits(r, 5)
    if c == "VU":
        return "678" + r.choice(["54", "77"]) + digits(r, 5)
    if c == "CK":
        return "682" + r.choice(["5", "7"]) + digits(r, 4)
    if c == "NU":
        return "683" + r.choice(["4", "7"]) + digits(r, 3)
    if c == "KI":
        return "686" + r.choice(["72", "73"]) + digits(r, 6)
    if c == "TV":
        return "68890" + digits(r, 4)
    if c == "PG":
        return "6757" + digits(r, 7)
    if c == "JM":
        return "1876" + r.choice("2348") + digits(r, 6) if r.random() < 0.7 else "18769" + str(r.randint(2, 9)) + digits(r, 5)
    if c == "INMARSAT":
        return "87077" + digits(r, 7)
    if c == "IRIDIUM":
        return "8816" + digits(r, 8)
    if c == "GMSS":
        return "881" + r.choice("89") + digits(r, 8)
    if c == "THURAYA":
        return "88216" + digits(r, 8)
    if c == "INTNET882":
        return "88213" + digits(r, 7)
    if c == "INTNET883":
        return "883510" + digits(r, 6)
    if c == "UK_PAGER":
        return "4476" + r.choice(["59", "91", "40", "66"]) + digits(r, 6)
    if c == "UK_PREMIUM":
        return "449" + r.choice(["09", "04", "83"]) + digits(r, 7)
    if c == "UK_PERSONAL":
        return "4470" + r.choice(["10", "24", "56", "89"]) + digits(r, 6)
    if c == "LV_PREMIUM":
        return "37190" + digits(r, 6)
    if c == "LT_PREMIUM":
        return "3709" + r.choice(["00", "02"]) + digits(r, 5)
    if c == "NL_0906":
        return "31906" + digits(r, 7)
    if c == "NL_0909":
        return "31909" + digits(r, 7)
    if c == "UK_CONF":
        return "44330" + digits(r, 7)
    raise ValueError(c)


def dialled(e164):
    """How a Dutch PBX user dials it."""
    if e164.startswith("31"):
        return "0" + e164[2:]
    return "00" + e164


# ----------------------------------------------------------------------------- accounts

WORDS = ["dijkstra", "molen", "polder", "brug", "haven", "tulp", "klomp", "gracht", "duin", "kaas",
         "fiets", "kade", "sluis", "wiel", "berg", "akker", "beek", "hoeve", "linde", "eik", "toren",
         "veld", "water", "zand", "klei", "wind", "ster", "maan", "zon", "vos", "uil", "reiger"]

KINDS = {
    # ext range, calls per ext per weekday, out/in/internal, intl share, weekend factor (Sat, Sun), profile
    "office": dict(ext=(2, 9), cpd=(6, 11), dir=(0.52, 0.36, 0.12), intl=(0.03, 0.10), wk=(0.04, 0.015), prof="office"),
    "midsize": dict(ext=(15, 55), cpd=(4, 8), dir=(0.48, 0.34, 0.18), intl=(0.05, 0.15), wk=(0.05, 0.02), prof="office"),
    "callcentre": dict(ext=(12, 45), cpd=(30, 48), dir=(0.88, 0.10, 0.02), intl=(0.01, 0.04), wk=(0.3, 0.0), prof="cc"),
    "trader": dict(ext=(3, 12), cpd=(6, 10), dir=(0.56, 0.34, 0.10), intl=(0.30, 0.50), wk=(0.12, 0.05), prof="office"),
    "roundclock": dict(ext=(10, 40), cpd=(3, 6), dir=(0.44, 0.42, 0.14), intl=(0.02, 0.05), wk=(0.85, 0.8), prof="247"),
}

PROFILES = {
    "office": [0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.3, 1.5, 4.5, 7.5, 8.5, 7.2, 4.0, 6.0, 7.8, 7.2, 5.8, 3.3,
               1.4, 0.7, 0.45, 0.3, 0.18, 0.1],
    "cc": [0, 0, 0, 0, 0, 0, 0.05, 0.4, 4, 6.5, 7, 7, 5, 6.5, 7, 6.5, 6, 5, 6.2, 6.5, 5.5, 1.5, 0.05, 0],
    "247": [2.2, 1.8, 1.5, 1.4, 1.5, 2.0, 3.5, 5.5, 6.5, 7, 7, 6.5, 5.5, 6.3, 6.8, 6.5, 6, 5.2, 4.2, 3.6, 3.2,
            3.0, 2.8, 2.5],
    "weekend": [0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 2, 3.5, 4, 4, 3, 3, 3, 2.5, 2, 1.5, 1, 0.8, 0.6,
                0.4, 0.3, 0.2],
}
CUM = {k: [sum(v[:i + 1]) for i in range(24)] for k, v in PROFILES.items()}

WEEKDAY = [1.0, 1.06, 0.98, 1.03, 0.82]

EURO = ["DE", "BE", "FR", "GB", "ES", "IT", "PL"]
NL_HOLIDAYS = {dt.date(2026, 1, 1), dt.date(2026, 4, 3), dt.date(2026, 4, 6), dt.date(2026, 4, 27),
               dt.date(2026, 5, 14), dt.date(2026, 5, 25), dt.date(2026, 12, 25), dt.date(2026, 12, 26)}


class Account:
    pass


def make_accounts(seed, n):
    r = R(seed, "accounts")
    kinds = (["office"] * 66 + ["midsize"] * 30 + ["callcentre"] * 14 + ["trader"] * 16 + ["roundclock"] * 16)
    # special honest profiles with small legitimate high-risk traffic
    specials = ["travel_cuba", "travel_cuba", "ngo_westafrica", "shipping_sat", "trader_jamaica", "trader_guinea",
                "trader_jamaica2", "midsize_ukclients"]
    kinds = kinds[: n - len(specials)] + specials
    r.shuffle(kinds)
    accts = []
    used = set()
    for i, k in enumerate(kinds):
        a = Account()
        while True:
            name = f"{r.choice(WORDS)}{r.choice(WORDS)}-{r.randint(100, 999)}"
            if name not in used:
                used.add(name)
                break
        a.name = name
        a.special = k if k not in KINDS else None
        base = {"travel_cuba": "office", "ngo_westafrica": "midsize", "shipping_sat": "midsize",
                "trader_jamaica": "trader", "trader_guinea": "trader", "trader_jamaica2": "trader",
                "midsize_ukclients": "midsize"}.get(k, k)
        a.kind = base
        K = KINDS[base]
        n_ext = r.randint(*K["ext"])
        scheme = r.random()
        if scheme < 0.6:
            first = 201
        elif scheme < 0.8:
            first = 301
        else:
            first = 5001
        a.exts = [str(first + j) for j in range(n_ext)]
        # uneven activity: a few busy people, many quiet ones (call-centre agents similar)
        if base == "callcentre":
            a.w = [r.uniform(0.8, 1.2) for _ in a.exts]
        else:
            a.w = [1.0 / (j + 1.5) ** 0.7 * r.uniform(0.6, 1.4) for j in range(n_ext)]
        s = sum(a.w)
        per_day = r.uniform(*K["cpd"]) * n_ext
        a.ext_rate = [per_day * x / s for x in a.w]
        a.dir = K["dir"]
        a.intl = r.uniform(*K["intl"])
        a.wk = K["wk"]
        a.prof = K["prof"]
        if base == "trader":
            cs = ["NG", "IN", "MA", "CN", "US"] + r.sample(EURO, 2)
            cw = [r.uniform(1, 3) for _ in cs]
        elif base == "callcentre":
            cs = ["BE", "DE"]
            cw = [2, 1]
        else:
            cs = r.sample(EURO + ["US"], r.randint(1, 4))
            cw = [r.uniform(0.5, 2) for _ in cs]
        if k == "midsize_ukclients":
            cs = ["GB", "DE", "US"]
            cw = [6, 1, 1]
            a.intl = 0.30
        a.countries, a.cweights = cs, cw
        # mobile share of national calls
        a.mobile = r.uniform(0.35, 0.55) if base != "callcentre" else r.uniform(0.45, 0.7)
        # address book shared by outbound callees and inbound callers
        nb = min(300, 20 + 5 * n_ext)
        a.book = []
        for _ in range(nb):
            a.book.append(pick_dest(r, a, allow_book=False))
        a.book_cum = [sum(1.0 / (j + 1) ** 0.9 for j in range(i + 1)) for i in range(nb)]
        accts.append(a)
    return accts


def pick_dest(r, a, allow_book=True):
    """E.164 digits of an ordinary outbound destination for account a."""
    if allow_book and r.random() < 0.6:
        return r.choices(a.book, cum_weights=a.book_cum)[0]
    if r.random() < a.intl:
        c = r.choices(a.countries, weights=a.cweights)[0]
        return intl(c, r)
    x = r.random()
    if x < a.mobile:
        return nl_mobile(r)
    x = r.random()
    if x < 0.06:
        return nl_company(r)
    if x < 0.12:
        return nl_tollfree(r)
    if x < 0.13:
        return nl_info(r)
    return nl_fixed(r)


# ----------------------------------------------------------------------------- call store


class Month:
    def __init__(self, start, days):
        self.start = start
        self.days = days
        self.calls = []   # (acct, direction, ext, other, start, ring, billsec, disp, scenario, kind, incident)

    def date(self, d):
        return self.start + dt.timedelta(days=d)

    def at(self, d, h, m=0, s=0):
        """Epoch of local wall time on day index d plus h:m:s (h may exceed 23)."""
        loc = dt.datetime.combine(self.date(d), dt.time(0)) + dt.timedelta(hours=h, minutes=m, seconds=s)
        return int(loc.replace(tzinfo=AMS).timestamp())

    def add(self, acct, direction, ext, other, start, ring, billsec, disp, scenario="baseline", kind="honest",
            incident=""):
        self.calls.append((acct, direction, ext, other, int(start), int(ring), int(billsec), disp, scenario, kind,
                           incident))


def outcome(r, p_answer, talk_median, sigma=1.0, cap=7200, short_share=0.2):
    """(ring, billsec, disposition)."""
    if r.random() < p_answer:
        ring = r.randint(2, 22)
        if r.random() < short_share:
            b = r.lognormvariate(math.log(30), 0.6)
        else:
            b = r.lognormvariate(math.log(talk_median), sigma)
        return ring, max(1, min(cap, int(b))), "ANSWERED"
    x = r.random()
    if x < 0.62:
        return r.randint(12, 45), 0, "NO ANSWER"
    if x < 0.87:
        return r.randint(1, 8), 0, "BUSY"
    return r.randint(0, 3), 0, "FAILED"


# ----------------------------------------------------------------------------- honest traffic


def day_factor(a, month, d, r):
    date = month.date(d)
    wd = date.weekday()
    hol = date in NL_HOLIDAYS
    if wd >= 5 or hol:
        f = a.wk[0] if wd == 5 else a.wk[1]
        if hol and wd < 5:
            f = a.wk[1] if a.kind != "roundclock" else 0.8
        prof = "weekend" if a.kind not in ("roundclock",) else "247"
        if a.kind == "callcentre" and wd == 5:
            prof = "cc"
    else:
        f = WEEKDAY[wd]
        prof = a.prof
    return f * r.lognormvariate(0, 0.12), prof


def honest_requests(seed, a, month, extra):
    """Call requests for one account: (ext, desired start, direction, other, ring, billsec, disp, scenario)."""
    reqs = []
    for d in range(month.days):
        r = R(seed, "day", a.name, d)
        f, prof = day_factor(a, month, d, r)
        label = "baseline"
        mult = 1.0
        exts = a.exts
        rates = a.ext_rate
        ov = extra.get(("day", a.name, d))
        if ov:
            label, f, prof_o, exts, rates = ov(a, d, f, r)
            if prof_o:
                prof = prof_o
        day0 = month.at(d, 0)
        day_len = month.at(d + 1, 0) - day0  # 23/24/25 h on DST days
        for ext, rate in zip(exts, rates):
            n = poisson(r, rate * f * mult)
            for _ in range(n):
                h = r.choices(range(24), cum_weights=CUM[prof])[0]
                t = day0 + h * 3600 + r.randint(0, 3599)
                if t >= day0 + day_len:
                    t = day0 + day_len - 1
                x = r.random()
                if x < a.dir[0]:
                    if r.random() < 1 / 3000:
                        ring, b, disp = r.randint(1, 4), r.randint(40, 400), "ANSWERED"
                        reqs.append((ext, t, "out", "112", ring, b, disp, label))
                        continue
                    e = pick_dest(r, a)
                    intl_ = not e.startswith("31")
                    p = 0.62 if intl_ else (0.68 if e.startswith("316") else 0.76)
                    if a.kind == "callcentre":
                        p -= 0.08
                    med = 150 if intl_ else (75 if a.kind == "callcentre" else 110)
                    ring, b, disp = outcome(r, p, med, cap=9000)
                    reqs.append((ext, t, "out", dialled(e), ring, b, disp, label))
                elif x < a.dir[0] + a.dir[1]:
                    y = r.random()
                    if y < 0.04:
                        src = "anonymous"
                    elif y < 0.55:
                        src = dialled(r.choices(a.book, cum_weights=a.book_cum)[0])
                    else:
                        src = dialled(pick_dest(r, a, allow_book=False))
                    ring, b, disp = outcome(r, 0.8, 120, cap=9000)
                    if disp in ("BUSY", "FAILED"):
                        disp, ring = "NO ANSWER", r.randint(15, 30)
                    reqs.append((ext, t, "in", src, ring, b, disp, label))
                else:
                    if len(exts) < 2:
                        continue
                    other = r.choice(exts)
                    if other == ext:
                        continue
                    ring, b, disp = outcome(r, 0.85, 55, sigma=0.9, cap=3600)
                    reqs.append((ext, t, "int", other, ring, b, disp, label))
    return reqs


def schedule(seed, a, reqs, month):
    """One person, one call: outbound/internal calls wait for the extension, inbound ones get BUSY."""
    r = R(seed, "sched", a.name)
    by = {}
    for q in reqs:
        by.setdefault(q[0], []).append(q)
    for ext, qs in by.items():
        qs.sort(key=lambda q: (q[1], q[2], q[3]))
        free = 0
        for (_, t, direction, other, ring, b, disp, label) in qs:
            if t < free:
                if direction == "in":
                    month.add(a.name, "in", ext, other, t, r.randint(1, 3), 0, "BUSY", label)
                    continue
                if free - t > 1800 and other != "112":
                    continue  # gave up
                t = free + r.randint(5, 90)
            month.add(a.name, direction, ext, other, t, ring, b, disp, label)
            free = t + ring + b


# ----------------------------------------------------------------------------- scenario helpers

def days_where(month, pred, lo=8, hi=None):
    hi = month.days if hi is None else hi
    return [d for d in range(lo, hi) if pred(month.date(d))]


def is_workday(date):
    return date.weekday() < 5 and date not in NL_HOLIDAYS


class Fraud:
    def __init__(self, month, acct, scenario, r):
        self.m, self.a, self.sc, self.r = month, acct, scenario, r
        self.inc = f"{scenario}-{acct.name}"
        self.n = 0

    def call(self, ext, e164_or_dialled, start, billsec, disp="ANSWERED", ring=None, direction="out", raw=False):
        r = self.r
        if ring is None:
            ring = r.randint(3, 14) if disp == "ANSWERED" else (r.randint(15, 40) if disp == "NO ANSWER" else
                                                                  r.randint(0, 3))
        other = e164_or_dialled if raw else dialled(e164_or_dialled)
        self.m.add(self.a.name, direction, ext, other, start, ring, billsec if disp == "ANSWERED" else 0, disp,
                   self.sc, "fraud", self.inc)
        self.n += 1
        return start + ring + (billsec if disp == "ANSWERED" else 0)

    def channel(self, ext, t0, t1, numbers, dur, p_unans=0.1):
        """Back-to-back calls on one channel from t0 until t1."""
        r, t = self.r, t0
        while t < t1:
            num = r.choice(numbers)
            if r.random() < p_unans:
                t = self.call(ext, num, t, 0, r.choice(["NO ANSWER", "FAILED", "BUSY"]))
            else:
                t = self.call(ext, num, t, r.randint(*dur))
            t += r.randint(3, 45)


def quiet_ext(a, r):
    return a.exts[-1 - r.randrange(max(1, len(a.exts) // 3))]


# ----------------------------------------------------------------------------- fraud families


def f_pbx_weekend_2ch(m, a, r):
    """Friday 21:40 test calls, then 3 nights (Fri/Sat/Sun) of 2 long parallel channels to Sierra Leone/Liberia."""
    f = Fraud(m, a, "pbx_hack_weekend_2ch", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 4, 8, m.days - 3))
    ext = quiet_ext(a, r)
    nums = [intl("SL", r) for _ in range(3)] + [intl("LR", r) for _ in range(2)]
    f.call(ext, nums[0], m.at(d, 21, 40, r.randint(0, 59)), r.randint(15, 40))
    f.call(ext, nums[3], m.at(d, 21, 52, r.randint(0, 59)), r.randint(15, 40))
    for k in range(3):
        for ch in range(2):
            f.channel(ext, m.at(d + k, 23, 10 + 7 * ch), m.at(d + k, 30), nums, (70 * 60, 150 * 60), 0.08)
    return f


def f_pbx_evening_after_daytest(m, a, r):
    """A 45 s answered test call at 17:50 (office hours), then 3 nights 20:30-05:30 of 4 channels to East Timor."""
    f = Fraud(m, a, "pbx_hack_evening_after_daytest", r)
    d = r.choice(days_where(m, lambda x: x.weekday() in (0, 1, 2) and is_workday(x), 8, m.days - 3))
    ext = quiet_ext(a, r)
    nums = [intl("TL", r) for _ in range(6)]
    f.call(ext, nums[0], m.at(d, 17, 50, r.randint(0, 59)), 45)
    for k in range(3):
        for ch in range(4):
            f.channel(ext, m.at(d + k, 20, 30 + 3 * ch), m.at(d + k, 29, 30), nums, (20 * 60, 55 * 60), 0.1)
    # the next morning someone in the office calls 112 (honest, must pass even if the account is blocked)
    m.add(a.name, "out", a.exts[0], "112", m.at(d + 1, 8, 14, 30), 2, 185, "ANSWERED", "emergency_while_blocked")
    return f


def f_pbx_known_country(m, a, r):
    """Account that calls Guinea legitimately: 8 nights in a row, one channel, back-to-back 50-58 min calls."""
    f = Fraud(m, a, "pbx_hack_known_country_1ch", r)
    d = r.choice(days_where(m, lambda x: x.weekday() in (1, 2, 3), 9, m.days - 8))
    ext = quiet_ext(a, r)
    nums = [intl("GN", r) for _ in range(4)]
    for k in range(8):
        f.channel(ext, m.at(d + k, 22, r.randint(0, 40)), m.at(d + k, 30), nums, (50 * 60, 58 * 60), 0.05)
    return f


def f_sat_sunday_multi_ext(m, a, r):
    """Sunday 02:00-07:00: 6 extensions, one channel each, GMSS/Thuraya/+882/+883."""
    f = Fraud(m, a, "satellite_sunday_multi_ext", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 6))
    nums = [intl(c, r) for c in ("GMSS", "GMSS", "THURAYA", "INTNET882", "INTNET883", "INTNET883")]
    exts = r.sample(a.exts, min(6, len(a.exts)))
    for i, ext in enumerate(exts):
        f.channel(ext, m.at(d, 2, 3 * i, r.randint(0, 59)), m.at(d, 7), nums, (10 * 60, 40 * 60), 0.15)
    return f


def f_sat_weekday_single(m, a, r):
    """Thursday 15:10 office hours: one channel, 4 hours of 20-45 min calls to Inmarsat."""
    f = Fraud(m, a, "satellite_weekday_office_1ch", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 3 and is_workday(x)))
    ext = quiet_ext(a, r)
    nums = [intl("INMARSAT", r) for _ in range(3)]
    f.channel(ext, m.at(d, 15, 10), m.at(d, 19, 10), nums, (20 * 60, 45 * 60), 0.1)
    return f


def f_sat_friday_evening(m, a, r):
    """Friday 19:05 (before night hours) 10 channels from 2 extensions to +883/Thuraya for 3 hours."""
    f = Fraud(m, a, "satellite_friday_1905_10ch", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 4))
    exts = r.sample(a.exts, 2)
    nums = [intl(c, r) for c in ("INTNET883", "INTNET883", "THURAYA", "THURAYA", "INTNET882")]
    for ch in range(10):
        f.channel(exts[ch % 2], m.at(d, 19, 5, 20 * ch), m.at(d, 22, 5), nums, (3 * 60, 25 * 60), 0.12)
    return f


def drip(f, m, r, exts, nums, days, calls_per_day, dur):
    for d in days:
        for _ in range(r.randint(*calls_per_day)):
            h = r.choice([9, 10, 10, 11, 13, 14, 14, 15, 16])
            f.call(r.choice(exts), r.choice(nums), m.at(d, h, r.randint(0, 59), r.randint(0, 59)), r.randint(*dur))


def f_drip_uk_pager(m, a, r):
    """Working days from day 8: 3-5 calls/day of 18-35 min to UK 076 pagers from 5 extensions."""
    f = Fraud(m, a, "slow_drip_uk076_pager", r)
    days = days_where(m, is_workday, 8)
    drip(f, m, r, r.sample(a.exts, min(5, len(a.exts))), [intl("UK_PAGER", r) for _ in range(3)], days, (3, 5),
         (18 * 60, 35 * 60))
    return f


def f_drip_png(m, a, r):
    """Working days from day 9: 1-3 calls/day of 10-18 min to Papua New Guinea (high, not critical)."""
    f = Fraud(m, a, "slow_drip_png", r)
    days = days_where(m, is_workday, 9)
    drip(f, m, r, r.sample(a.exts, min(4, len(a.exts))), [intl("PG", r) for _ in range(3)], days, (1, 3),
         (10 * 60, 18 * 60))
    return f


def f_drip_jamaica(m, a, r):
    """Account that calls the US: working days from day 8, 3-5 calls/day of 15-30 min to Jamaica +1 876."""
    f = Fraud(m, a, "slow_drip_jamaica", r)
    days = days_where(m, is_workday, 8)
    drip(f, m, r, r.sample(a.exts, min(6, len(a.exts))), [intl("JM", r) for _ in range(4)], days, (3, 5),
         (15 * 60, 30 * 60))
    return f


def scan_block(r, cc_prefix, n):
    base = int(cc_prefix + digits(r, 3) + "000")
    return [str(base + i) for i in range(n)]


def f_scan_slow_guinea(m, a, r):
    """Office hours: 25 numbers/hour for 3 hours (3 extensions) across a Guinea block, then 21:00 burst 6 channels."""
    f = Fraud(m, a, "number_scan_slow_guinea", r)
    d = r.choice(days_where(m, is_workday, 8, m.days - 1))
    block = scan_block(r, "22466", 75)
    exts = r.sample(a.exts, min(3, len(a.exts)))
    t = m.at(d, 10, r.randint(0, 20))
    found = []
    for i, num in enumerate(block):
        x = r.random()
        if x < 0.45:
            f.call(exts[i % len(exts)], num, t, 0, "FAILED")
        elif x < 0.8:
            f.call(exts[i % len(exts)], num, t, 0, "NO ANSWER", ring=r.randint(5, 20))
        elif x < 0.9:
            f.call(exts[i % len(exts)], num, t, 0, "BUSY")
        else:
            f.call(exts[i % len(exts)], num, t, r.randint(3, 10))
            found.append(num)
        t += r.randint(100, 190)
    found = found[:3] or block[:2]
    for ch in range(6):
        f.channel(exts[ch % len(exts)], m.at(d, 21, ch * 2), m.at(d, 24 + 3), found, (15 * 60, 45 * 60), 0.05)
    return f


def f_scan_fast_jamaica(m, a, r):
    """80 calls in 40 minutes over a Jamaica block from one extension, 2 h later 5 channels for 2 hours."""
    f = Fraud(m, a, "number_scan_fast_jamaica", r)
    d = r.choice(days_where(m, is_workday, 8))
    block = scan_block(r, "18768", 80)
    ext = quiet_ext(a, r)
    t = m.at(d, 11, r.randint(0, 30))
    found = []
    for num in block:
        x = r.random()
        if x < 0.5:
            f.call(ext, num, t, 0, "FAILED")
        elif x < 0.85:
            f.call(ext, num, t, 0, "NO ANSWER", ring=r.randint(3, 12))
        else:
            f.call(ext, num, t, r.randint(3, 8))
            found.append(num)
        t += r.randint(20, 40)
    found = found[:3] or block[:2]
    t0 = t + 2 * 3600
    for ch in range(5):
        f.channel(ext, t0 + 30 * ch, t0 + 2 * 3600, found, (20 * 60, 50 * 60), 0.05)
    return f


def f_scan_uk070_spread(m, a, r):
    """Wednesday 13:00: 60 UK 070 numbers scanned by 6 extensions in 50 min, then 5 channels for 90 min."""
    f = Fraud(m, a, "number_scan_uk070_spread", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 2 and is_workday(x)))
    block = scan_block(r, "447024", 60)
    exts = r.sample(a.exts, min(6, len(a.exts)))
    t = m.at(d, 13, r.randint(0, 9))
    found = []
    for i, num in enumerate(block):
        if r.random() < 0.3:
            f.call(exts[i % len(exts)], num, t, r.randint(2, 6))
            found.append(num)
        else:
            f.call(exts[i % len(exts)], num, t, 0, r.choice(["FAILED", "NO ANSWER", "BUSY"]))
        t += r.randint(30, 70)
    found = found[:3] or block[:2]
    for ch in range(5):
        f.channel(exts[ch % len(exts)], t + 600 + 10 * ch, t + 600 + 90 * 60, found, (10 * 60, 30 * 60), 0.05)
    return f


def wangiri(f, m, r, ring_nums, exts, t_ring, present, cb_delay, cb_dur, extra_unreturned=3):
    for i, num in enumerate(ring_nums):
        tgt = r.sample(exts, min(len(exts), r.randint(2, 4)))
        for j, ext in enumerate(tgt):
            tr = t_ring + i * 120 + j * r.randint(5, 40)
            f.call(ext, present(num), tr, 0, "NO ANSWER", ring=r.randint(1, 4), direction="in", raw=True)
            tc = tr + r.randint(*cb_delay)
            f.call(ext, num, tc, r.randint(*cb_dur))
            if r.random() < 0.25:
                f.call(ext, num, tc + r.randint(300, 3600), r.randint(*cb_dur))
    for _ in range(extra_unreturned):
        f.call(r.choice(exts), present(intl(r.choice(["SL", "GN", "LR"]), r)), t_ring + r.randint(0, 900), 0,
               "NO ANSWER", ring=r.randint(1, 3), direction="in", raw=True)


def f_wangiri_weekend_gap(m, a, r):
    """Friday 18:30 one-rings from Liberia/Sierra Leone/Guinea shown as +CC; called back Monday morning (~63 h)."""
    f = Fraud(m, a, "wangiri_plus_format_monday_callback", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 4, 8, m.days - 3))
    nums = [intl(c, r) for c in ("LR", "SL", "GN")]
    t_ring = m.at(d, 18, 30)
    monday = m.at(d + 3, 9, 15) - t_ring
    wangiri(f, m, r, nums, a.exts, t_ring, lambda n: "+" + n, (monday, monday + 3600), (60, 240))
    return f


def f_wangiri_jamaica(m, a, r):
    """Weekday 10:00 one-rings from Jamaica shown as 001876..., to many extensions; callbacks within 10 min-3 h."""
    f = Fraud(m, a, "wangiri_jamaica_same_day", r)
    d = r.choice(days_where(m, is_workday))
    nums = [intl("JM", r) for _ in range(4)]
    wangiri(f, m, r, nums, a.exts, m.at(d, 10, 2), lambda n: "00" + n, (600, 3 * 3600), (60, 300))
    return f


def f_wangiri_late(m, a, r):
    """Thursday 17:00 one-rings from Tonga/Cook Islands; called back 88-92 h later (past the 72 h memory)."""
    f = Fraud(m, a, "wangiri_callback_after_72h", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 3, 8, m.days - 4))
    nums = [intl("TO", r), intl("CK", r), intl("TO", r)]
    wangiri(f, m, r, nums, a.exts, m.at(d, 17, 0), lambda n: "00" + n, (88 * 3600, 92 * 3600), (60, 300))
    return f


def f_premium_uk09(m, a, r):
    f = Fraud(m, a, "office_premium_uk09_known_country", r)
    d = r.choice(days_where(m, is_workday))
    nums = [intl("UK_PREMIUM", r) for _ in range(2)]
    exts = r.sample(a.exts, min(2, len(a.exts)))
    t = m.at(d, 10, r.randint(0, 50))
    for _ in range(8):
        t = f.call(r.choice(exts), r.choice(nums), t, r.randint(8 * 60, 25 * 60)) + r.randint(60, 1200)
    return f


def f_premium_lv(m, a, r):
    f = Fraud(m, a, "office_premium_latvia_partner_account", r)
    d = r.choice(days_where(m, is_workday, 14))
    nums = [intl("LV_PREMIUM", r) for _ in range(3)]
    exts = r.sample(a.exts, min(3, len(a.exts)))
    for k in range(2):
        t = m.at(d + k, 9, r.randint(10, 50))
        for _ in range(6):
            t = f.call(r.choice(exts), r.choice(nums), t, r.randint(5 * 60, 20 * 60)) + r.randint(120, 2400)
    return f


def f_premium_lt_parallel(m, a, r):
    f = Fraud(m, a, "office_premium_lithuania_10ext_parallel", r)
    d = r.choice(days_where(m, is_workday))
    nums = [intl("LT_PREMIUM", r) for _ in range(4)]
    exts = r.sample(a.exts, min(10, len(a.exts)))
    t0 = m.at(d, 14, r.randint(0, 30))
    for i, ext in enumerate(exts):
        f.call(ext, r.choice(nums), t0 + i * r.randint(20, 90), r.randint(10 * 60, 30 * 60))
    return f


def f_multi_night_mixed(m, a, r):
    """Tuesday 20:05 onwards: 8 extensions, one channel each, Somalia/Liberia/Sierra Leone until 04:00."""
    f = Fraud(m, a, "multi_ext_night_2005_mixed", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 1))
    exts = r.sample(a.exts, min(8, len(a.exts)))
    cs = ["SO", "LR", "SL"]
    for i, ext in enumerate(exts):
        nums = [intl(cs[i % 3], r) for _ in range(2)]
        f.channel(ext, m.at(d, 20, 5 + 4 * i), m.at(d, 28), nums, (40 * 60, 70 * 60), 0.1)
    return f


def f_multi_night_cuba_known(m, a, r):
    """Travel agency that calls Cuba: one night, 5 extensions, one channel each, 40-60 min calls to Cuba."""
    f = Fraud(m, a, "multi_ext_night_cuba_known_country", r)
    d = r.choice(days_where(m, lambda x: x.weekday() in (0, 1, 2, 3)))
    exts = r.sample(a.exts, min(5, len(a.exts)))
    for i, ext in enumerate(exts):
        nums = [intl("CU", r) for _ in range(2)]
        f.channel(ext, m.at(d, 23, 40 + 3 * i), m.at(d, 29, 30), nums, (40 * 60, 60 * 60), 0.1)
    return f


def f_multi_dawn(m, a, r):
    """Thursday 05:30-09:30 (crosses 07:00): 4 extensions, one channel each, Guinea and Cuba."""
    f = Fraud(m, a, "multi_ext_dawn_into_office_hours", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 3 and is_workday(x)))
    exts = r.sample(a.exts, min(4, len(a.exts)))
    for i, ext in enumerate(exts):
        nums = [intl("GN" if i % 2 else "CU", r) for _ in range(2)]
        f.channel(ext, m.at(d, 5, 30 + 10 * i), m.at(d, 9, 30), nums, (25 * 60, 45 * 60), 0.1)
    return f


def f_pacific_png(m, a, r):
    """Weekday 11:00: 14 calls in 75 min from 5 extensions to Papua New Guinea (high, not critical)."""
    f = Fraud(m, a, "pacific_daytime_png", r)
    d = r.choice(days_where(m, is_workday))
    exts = r.sample(a.exts, min(5, len(a.exts)))
    nums = [intl("PG", r) for _ in range(5)]
    for i in range(14):
        f.call(r.choice(exts), r.choice(nums), m.at(d, 11, r.randint(0, 74)), r.randint(10 * 60, 30 * 60),
               "ANSWERED" if r.random() > 0.15 else "NO ANSWER")
    return f


def f_pacific_afternoon(m, a, r):
    """Weekday 15:30: 20 calls in 60 min, 3 extensions, Kiribati/Tuvalu/Niue."""
    f = Fraud(m, a, "pacific_afternoon_kiribati_tuvalu_niue", r)
    d = r.choice(days_where(m, is_workday))
    exts = r.sample(a.exts, min(3, len(a.exts)))
    nums = [intl(c, r) for c in ("KI", "TV", "NU", "KI")]
    for i in range(20):
        f.call(r.choice(exts), r.choice(nums), m.at(d, 15, 30 + r.randint(0, 59)), r.randint(3 * 60, 20 * 60),
               "ANSWERED" if r.random() > 0.15 else "NO ANSWER")
    return f


def f_pacific_monday(m, a, r):
    """Monday 09:05: 8 extensions each one 15-30 min call to Tonga/Vanuatu/Nauru, plus PNG."""
    f = Fraud(m, a, "pacific_monday_0905_8ext", r)
    d = r.choice(days_where(m, lambda x: x.weekday() == 0 and is_workday(x)))
    exts = r.sample(a.exts, min(8, len(a.exts)))
    nums = [intl(c, r) for c in ("TO", "VU", "NR", "PG")]
    for i, ext in enumerate(exts):
        f.call(ext, nums[i % 4], m.at(d, 9, 5 + i * 2, r.randint(0, 59)), r.randint(15 * 60, 30 * 60))
    return f


FRAUD = [
    ("pbx", f_pbx_weekend_2ch, ("office", "midsize")),
    ("pbx", f_pbx_evening_after_daytest, ("office", "midsize")),
    ("pbx", f_pbx_known_country, ("trader_guinea",)),
    ("sat", f_sat_sunday_multi_ext, ("midsize",)),
    ("sat", f_sat_weekday_single, ("office",)),
    ("sat", f_sat_friday_evening, ("office", "midsize")),
    ("drip", f_drip_uk_pager, ("midsize_gb",)),
    ("drip", f_drip_png, ("midsize",)),
    ("drip", f_drip_jamaica, ("trader",)),
    ("scan", f_scan_slow_guinea, ("office", "midsize")),
    ("scan", f_scan_fast_jamaica, ("office", "roundclock")),
    ("scan", f_scan_uk070_spread, ("midsize",)),
    ("wangiri", f_wangiri_weekend_gap, ("midsize",)),
    ("wangiri", f_wangiri_jamaica, ("midsize_us",)),
    ("wangiri", f_wangiri_late, ("roundclock",)),
    ("premium", f_premium_uk09, ("office_gb",)),
    ("premium", f_premium_lv, ("partner_lv",)),
    ("premium", f_premium_lt_parallel, ("midsize",)),
    ("multi", f_multi_night_mixed, ("midsize",)),
    ("multi", f_multi_night_cuba_known, ("travel_cuba",)),
    ("multi", f_multi_dawn, ("office", "midsize")),
    ("pacific", f_pacific_png, ("office", "midsize")),
    ("pacific", f_pacific_afternoon, ("office",)),
    ("pacific", f_pacific_monday, ("midsize",)),
]


def suitable(a, want):
    if want == "midsize_gb":
        return a.kind == "midsize" and a.special is None and "GB" in a.countries and len(a.exts) >= 5
    if want == "midsize_us":
        return a.kind == "midsize" and a.special is None and "US" in a.countries
    if want == "office_gb":
        return a.kind in ("office", "midsize") and a.special is None and "GB" in a.countries
    if want == "partner_lv":
        return getattr(a, "partner", None) == "LV"
    if want in ("travel_cuba", "trader_guinea"):
        return a.special == want
    if want == "trader":
        return a.kind == "trader" and a.special is None and "US" in a.countries
    return a.kind == want and a.special is None


# ----------------------------------------------------------------------------- honest look-alikes and specials


def honest_scenarios(seed, accts, month, taken):
    """Returns (extra day overrides, extra requests per account)."""
    r = R(seed, "honest")
    extra = {}
    more = {}

    def pick(pred):
        c = [a for a in accts if a.name not in taken and pred(a)]
        a = r.choice(c)
        taken.add(a.name)
        return a

    def add(a, q):
        more.setdefault(a.name, []).append(q)

    def campaign(label, mult, new_agents, prof):
        def ov(a, d, f, rr):
            exts = a.exts + [str(int(a.exts[-1]) + 1 + j) for j in range(new_agents)]
            rates = a.ext_rate + [sum(a.ext_rate) / len(a.ext_rate)] * new_agents
            m = mult * sum(a.ext_rate) / sum(rates)
            return label, m * f, prof, exts, rates
        return ov

    # H1 campaign days: call centre weekday 6x with 20 temp agents; call centre 5x on a weekday until 21:30
    a = pick(lambda a: a.kind == "callcentre" and a.special is None)
    d = r.choice(days_where(month, is_workday, 15))
    extra[("day", a.name, d)] = campaign("campaign_day_6x_temp_agents", 6.0, 20, None)
    a = pick(lambda a: a.kind == "callcentre" and a.special is None)
    d = r.choice(days_where(month, is_workday, 15))
    extra[("day", a.name, d)] = campaign("campaign_day_5x_mobile_evening", 5.0, 0, "cc")
    a.campaign_mobile_day = d   # mix shifted to mobiles that day (handled below through the book)
    # a mid-size company's recall action: 5x on one weekday
    a = pick(lambda a: a.kind == "midsize" and a.special is None)
    d = r.choice(days_where(month, is_workday, 15))
    extra[("day", a.name, d)] = campaign("recall_action_day_5x", 5.0, 0, None)

    # H2 new partner country at ordinary rates, from a weekday in days 9-13 to the end
    for label, cc in (("new_partner_morocco", "MA"), ("new_partner_lithuania", "LT"), ("new_partner_latvia", "LV")):
        a = pick(lambda a: a.kind in ("office", "midsize") and a.special is None and cc not in a.countries)
        if cc == "LV":
            a.partner = "LV"
        d0 = r.randint(9, 13)
        partners = [intl(cc, r) for _ in range(r.randint(3, 6))]
        for d in days_where(month, is_workday, d0):
            for _ in range(r.randint(2, 5)):
                e = r.choice(partners) if r.random() < 0.85 else intl(cc, r)
                t = month.at(d, r.randint(9, 16), r.randint(0, 59), r.randint(0, 59))
                ring, b, disp = outcome(r, 0.7, 240)
                add(a, (r.choice(a.exts), t, "out", dialled(e), ring, b, disp, label))

    # H3 long calls: 3 h US conference; 4.5 h UK conference bridge; 3 h to India overnight
    a = pick(lambda a: a.kind in ("office", "midsize") and a.special is None)
    d = r.choice(days_where(month, is_workday))
    add(a, (a.exts[0], month.at(d, 14, r.randint(0, 119)), "out", dialled(intl("US", r)), 6, r.randint(10500, 11100),
            "ANSWERED", "long_conference_us_3h"))
    a = pick(lambda a: a.kind in ("office", "midsize") and a.special is None)
    d = r.choice(days_where(month, is_workday))
    add(a, (a.exts[1], month.at(d, 9, r.randint(0, 30)), "out", dialled(intl("UK_CONF", r)), 4,
            r.randint(15500, 16500), "ANSWERED", "long_conference_uk_bridge_4h30"))
    a = pick(lambda a: a.kind == "trader" and a.special is None)
    d = r.choice(days_where(month, is_workday))
    add(a, (a.exts[0], month.at(d, 22, r.randint(0, 30)), "out", dialled(intl("IN", r)), 5, r.randint(10000, 11500),
            "ANSWERED", "long_call_india_night_3h"))

    # H4 weekend shift at weekday volume (small office, mid-size), and a week of night shifts
    for kind, label in (("office", "weekend_shift_office"), ("midsize", "weekend_shift_midsize")):
        a = pick(lambda a: a.kind == kind and a.special is None)
        sat = r.choice(days_where(month, lambda x: x.weekday() == 5, 8, month.days - 1))

        def ov(a, d, f, rr, label=label):
            return label, rr.lognormvariate(0, 0.1), "office", a.exts, a.ext_rate
        extra[("day", a.name, sat)] = ov
        extra[("day", a.name, sat + 1)] = ov
    a = pick(lambda a: a.kind == "midsize" and a.special is None)
    d0 = r.choice(days_where(month, lambda x: x.weekday() == 0, 8, month.days - 6))
    for d in range(d0, d0 + 5):
        for ext, rate in zip(a.exts, a.ext_rate):
            for _ in range(poisson(r, rate * 0.6)):
                t = month.at(d, 22, 0) + r.randint(0, 8 * 3600)
                e = pick_dest(r, a)
                ring, b, disp = outcome(r, 0.7, 110)
                add(a, (ext, t, "out", dialled(e), ring, b, disp, "night_shift_week"))

    # H5 Nigeria/India/Morocco: diaspora week (+200 %), heavy Nigeria trader
    a = pick(lambda a: a.kind == "trader" and a.special is None)
    d0 = r.choice(days_where(month, lambda x: x.weekday() == 0, 8, month.days - 6))
    for d in range(d0, d0 + 7):
        for _ in range(r.randint(25, 45)):
            e = intl(r.choice(["NG", "NG", "IN", "MA"]), r)
            t = month.at(d, r.choice([9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21]), r.randint(0, 59))
            ring, b, disp = outcome(r, 0.62, 200)
            add(a, (r.choice(a.exts), t, "out", dialled(e), ring, b, disp, "diaspora_week"))
    a = pick(lambda a: a.kind == "trader" and a.special is None)
    a.countries, a.cweights, a.intl = ["NG", "MA", "IN"], [5, 2, 1], 0.65
    a.book = [pick_dest(r, a, allow_book=False) for _ in a.book]
    a.heavy_ng = True

    # specials: small legitimate traffic to high-risk ranges
    for a in accts:
        if a.special == "travel_cuba":
            hotels = [intl("CU", r) for _ in range(6)]
            for d in days_where(month, is_workday, 0):
                for _ in range(poisson(r, 0.5)):
                    t = month.at(d, r.randint(9, 16), r.randint(0, 59))
                    ring, b, disp = outcome(r, 0.55, 200)
                    add(a, (r.choice(a.exts), t, "out", dialled(r.choice(hotels)), ring, b, disp, "legit_cuba_hotels"))
        elif a.special == "ngo_westafrica":
            field = [intl("SL", r) for _ in range(4)] + [intl("LR", r) for _ in range(3)]
            for d in days_where(month, is_workday, 0):
                for _ in range(poisson(r, 2.5)):
                    t = month.at(d, r.randint(8, 16), r.randint(0, 59))
                    ring, b, disp = outcome(r, 0.6, 300)
                    add(a, (r.choice(a.exts[:6]), t, "out", dialled(r.choice(field)), ring, b, disp,
                            "legit_westafrica_field_office"))
                for _ in range(poisson(r, 1.5)):  # colleagues call in, staff call them back later
                    t = month.at(d, r.randint(8, 16), r.randint(0, 59))
                    ring, b, disp = outcome(r, 0.6, 300)
                    if disp != "ANSWERED":
                        disp, b = "NO ANSWER", 0
                    add(a, (r.choice(a.exts[:6]), t, "in", "00" + r.choice(field), ring, b, disp,
                            "legit_westafrica_field_office"))
        elif a.special == "shipping_sat":
            ships = [intl("INMARSAT", r) for _ in range(5)] + [intl("IRIDIUM", r) for _ in range(2)]
            for d in days_where(month, is_workday, 0):
                for _ in range(poisson(r, 0.5)):
                    t = month.at(d, r.randint(8, 17), r.randint(0, 59))
                    ring, b, disp = outcome(r, 0.65, 150, sigma=0.5, cap=600)
                    add(a, (r.choice(a.exts[:4]), t, "out", dialled(r.choice(ships)), ring, b, disp,
                            "legit_ship_satellite"))
        elif a.special in ("trader_jamaica", "trader_jamaica2"):
            jm = [intl("JM", r) for _ in range(5)]
            for d in days_where(month, is_workday, 0):
                for _ in range(poisson(r, 1.2)):
                    t = month.at(d, r.randint(14, 20), r.randint(0, 59))
                    ring, b, disp = outcome(r, 0.65, 240)
                    add(a, (r.choice(a.exts), t, "out", dialled(r.choice(jm)), ring, b, disp, "legit_jamaica"))
                for _ in range(poisson(r, 0.6)):
                    t = month.at(d, r.randint(14, 20), r.randint(0, 59))
                    ring, b, disp = outcome(r, 0.7, 240)
                    if disp != "ANSWERED":
                        disp, b = "NO ANSWER", 0
                    add(a, (r.choice(a.exts), t, "in", "00" + r.choice(jm), ring, b, disp, "legit_jamaica"))
        elif a.special == "trader_guinea":
            gn = [intl("GN", r) for _ in range(3)]
            for d in days_where(month, is_workday, 0):
                for _ in range(poisson(r, 0.6)):
                    t = month.at(d, r.randint(9, 17), r.randint(0, 59))
                    ring, b, disp = outcome(r, 0.6, 240)
                    add(a, (r.choice(a.exts), t, "out", dialled(r.choice(gn)), ring, b, disp, "legit_guinea"))
    return extra, more


# ----------------------------------------------------------------------------- output


def write(month, out, deck):
    calls = month.calls
    order = sorted(range(len(calls)), key=lambda i: (calls[i][4], i))
    seq = [0] * len(calls)
    for n, i in enumerate(order):
        seq[i] = n + 1
    cache = {}

    def loc(t):
        h = t // 900
        off = cache.get(h)
        if off is None:
            off = int(dt.datetime.fromtimestamp(h * 900, AMS).utcoffset().total_seconds())
            cache[h] = off
        return dt.datetime.fromtimestamp(t + off, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    rows = []
    for i, c in enumerate(calls):
        acct, direction, ext, other, start, ring, b, disp, sc, kind, inc = c
        end = start + ring + b
        rows.append((end, start, seq[i], i))
    rows.sort()
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "Master.csv"), "w", newline="") as mf, \
            open(os.path.join(out, "labels.csv"), "w", newline="") as lf:
        lf.write("call_id,account,extension,scenario,kind,incident\n")
        for end, start, s, i in rows:
            acct, direction, ext, other, start, ring, b, disp, sc, kind, inc = calls[i]
            uid = f"{start}.{s}"
            ca, cb = f"{2 * s - 1:08x}", f"{2 * s:08x}"
            if direction == "out":
                src, dst, ctx = ext, other, "from-internal"
                chan, dchan, data = f"SIP/{ext}-{ca}", f"SIP/trunk-{cb}", f"SIP/trunk/{other},60"
            elif direction == "in":
                src, dst, ctx = other, ext, "from-trunk"
                chan, dchan, data = f"SIP/trunk-{ca}", f"SIP/{ext}-{cb}", f"SIP/{ext},30"
            else:
                src, dst, ctx = ext, other, "from-internal"
                chan, dchan, data = f"SIP/{ext}-{ca}", f"SIP/{other}-{cb}", f"SIP/{other},30"
            if disp == "FAILED":
                dchan = ""
            ans = f'"{loc(start + ring)}"' if disp == "ANSWERED" else ""
            mf.write(f'"{acct}","{src}","{dst}","{ctx}","""{src}"" <{src}>","{chan}","{dchan}","Dial","{data}",'
                     f'"{loc(start)}",{ans},"{loc(end)}",{ring + b},{b},"{disp}","DOCUMENTATION","{uid}",""\n')
            lf.write(f"{uid},{acct},{ext},{sc},{kind},{inc}\n")
    shutil.copy(deck, os.path.join(out, "rates.csv"))
    with open(os.path.join(out, "tollguard.toml"), "w") as tf:
        tf.write('[defaults]\ncountry = "NL"\ntimezone = "Europe/Amsterdam"\n\n[[decks]]\npath = "rates.csv"\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", default="2026-06-01")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--accounts", type=int, default=150)
    ap.add_argument("--out", default=None)
    ap.add_argument("--deck", required=True, help="the A-Z deck to rate with (tollguard simulate's rates.csv)")
    args = ap.parse_args()
    start = dt.date.fromisoformat(args.start)
    out = args.out or f"month-{args.seed}"
    month = Month(start, args.days)
    accts = make_accounts(args.seed, args.accounts)
    taken = set()
    # fraud placement (pickiest first)
    r = R(args.seed, "placement")
    incidents = []
    plan = sorted(FRAUD, key=lambda x: sum(1 for a in accts if any(suitable(a, w) for w in x[2])))
    # honest look-alikes choose first (the Latvian-partner account is also the Latvia premium target)
    extra, more = honest_scenarios(args.seed, accts, month, taken)
    for fam, fn, wants in plan:
        cands = [a for a in accts if (a.name not in taken or "partner_lv" in wants)
                 and any(suitable(a, w) for w in wants)]
        if not cands:
            raise SystemExit(f"no account for {fn.__name__}")
        a = r.choice(cands)
        taken.add(a.name)
        f = fn(month, a, R(args.seed, "fraud", fn.__name__))
        incidents.append((fam, f.sc, a.name, f.n))
    # honest traffic
    for a in accts:
        reqs = honest_requests(args.seed, a, month, extra)
        if getattr(a, "campaign_mobile_day", None) is not None:
            d = a.campaign_mobile_day
            rr = R(args.seed, "mob", a.name)
            reqs = [(q[0], q[1], q[2], dialled(nl_mobile(rr)) if q[2] == "out" and q[7] != "baseline" and q[3] != "112"
                     and rr.random() < 0.8 else q[3], q[4], q[5], q[6], q[7]) for q in reqs]
        reqs += more.get(a.name, [])
        schedule(args.seed, a, reqs, month)
    write(month, out, args.deck)
    nf = sum(1 for c in month.calls if c[9] == "fraud")
    print(f"{out}: {len(month.calls)} calls, {nf} fraud, {len(accts)} accounts")
    for fam, sc, name, n in sorted(incidents):
        print(f"  {fam:8s} {sc:45s} {name:22s} {n} calls")
    hs = {}
    for c in month.calls:
        if c[9] == "honest" and c[8] != "baseline":
            hs.setdefault((c[8], c[0]), 0)
            hs[(c[8], c[0])] += 1
    for (sc, name), n in sorted(hs.items()):
        print(f"  honest   {sc:45s} {name:22s} {n} calls")


if __name__ == "__main__":
    main()

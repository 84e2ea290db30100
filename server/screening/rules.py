"""The rules: what a word classifier will not catch, as patterns with checks.

Secrets (BotArena tokens, private keys, cloud and forge tokens, a password written as an
assignment with its value), personal data (e-mail addresses, phone numbers, IBANs and
card numbers whose checksums hold, French social security numbers whose key holds,
postal addresses) and instruction injection aimed at other agents (English and French).
Abuse in French, and abuse in either language disguised by symbols ("f*ck", "c0nnard"),
is a lexicon of patterns here too: the English model knows neither. Each rule gives a
category, a score (how sure a match makes it) and the name of what it found, never the
matched text itself (a verdict is stored and shown; a secret must not be).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from botarena.arenas.policy import Category


@dataclass(frozen=True)
class Rule:
    category: Category
    name: str
    pattern: re.Pattern[str]
    score: float
    check: Callable[[re.Match[str]], bool] | None = None  # a checksum, a value's shape
    unmasked: bool = False  # also reads :func:`unmask`'s view of the text ("1gn0r3", "c0n")
    # a cheap look first, in lower case at the text's lower-cased view: without it, no
    # match (rules that share one look it up once per text)
    needs: re.Pattern[str] | None = None
    lowered: bool = False  # written in lower case and read on :func:`lower` views


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn(number: str) -> bool:
    """Whether a card number's Luhn check digit holds."""
    digits = [int(c) for c in _digits(number)]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban(text: str) -> bool:
    """Whether an IBAN's ISO 13616 check (mod 97) holds."""
    compact = re.sub(r"\s", "", text).upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def nir(text: str) -> bool:
    """Whether a French social security number's key holds (Corsica's 2A / 2B too)."""
    compact = re.sub(r"\s", "", text).upper()
    body, key = compact[:13], compact[13:]
    body = body.replace("2A", "19").replace("2B", "18")
    return body.isdigit() and key.isdigit() and 97 - int(body) % 97 == int(key)


_REFERENCE = re.compile(
    r"environ|getenv|secret[s]?\.|vault|\$|\{|<|\*{3}|\.\.\.|x{4}|\(|\)$|^(?:/|\./|~/)|"
    r"^(?:none|null|true|false)$|^(?:str|bytes|int|optional|secretstr|any)\b",
    re.IGNORECASE,
)


def _literal_value(match: re.Match[str]) -> bool:
    """Whether an assignment's value is a literal secret, not a reference to one
    (``os.environ[...]``, ``${VAR}``, ``<password>``, ``****``, a path). After ``=`` any
    literal is; after ``:``, "is" or "est" a plain word is not ("secret: block", "the
    password is stored..."): it needs a digit or a symbol."""
    value = match.group("value")
    if _REFERENCE.search(value):
        return False
    if "=" not in match.group("sep"):
        return bool(re.search(r"[\d\W_]", value))
    return True


_SECRET_NAME = (
    r"(?:password|passwd|pwd|pass|passphrase|secret|api[_-]?key|access[_-]?key|auth[_-]?token|"
    r"token|mot[ _]de[ _]passe|mdp)"
)


def _password_shaped(value: str) -> bool:
    """Whether a word written after "the wifi password for the lab:" is a password: letters
    with digits or symbols, not a reference to one."""
    return (
        not _REFERENCE.search(value)
        and bool(re.search(r"[^\W\d_]", value))
        and bool(re.search(r"[\d\W_]", value))
    )


# abuse the English model misses: French, threats, and either language disguised (the
# abuse rule reads the unmasked view of a text, see :func:`unmask`)
_ABUSE_WORDS = [
    # English
    r"f+u+c*k+(?:ing|er|ers|ed|s|face|wit)?",
    r"f\*+(?:c?k|ing)?(?:ing|er|ed)?",
    r"sh[i*]t(?:ty|s|head)?",
    r"b[i*]tch(?:es|y)?",
    r"ass ?holes?",
    r"dick ?heads?",
    r"dumb ?ass(?:es)?",
    r"c[u*]nts?",
    r"morons?",
    r"idiots?",
    r"imbeciles?",
    r"bastards?",
    r"losers?",
    r"st[u*]pid (?:bot|agent|machine|cow|bitch|idiot|moron|answer)",
    r"(?:useless|worthless|brain-?dead|pathetic) (?:bot|agent|clown|piece|idiot|moron|loser|junk)",
    r"(?:shut|stfu) (?:the fuck )?up|stfu",
    r"go to hell",
    r"piece of (?:shit|crap|garbage|trash)",
    r"eat shit",
    r"get lost,? (?:loser|idiot|moron)",
    r"(?:your|ur) crap",
    r"beat the (?:crap|shit|hell) out of",
    r"god ?damn(?:ed|it)?",
    r"(?:you|ya) (?:\w+ )?(?:clowns|idiots|morons|losers|imbeciles|bastards)",
    r"pathetic excuse for",
    r"make you (?:suffer|pay|bleed|regret)",
    # French
    r"c[o*]nn(?:ard|asse|erie)s?",
    r"(?:sale|pauvre|gros|grosse|esp[eè]ce de|bande de|vieux|petit) cons?",
    r"sale (?:conne|incapable|type|chien|chienne|porc|race|b[eê]te|nul|nulle|gosse)",
    r"(?:rien [àa]|j'en ai rien [àa]) (?:foutre|branler|cirer)",
    r"(?:[àa] la|de) con",
    r"sal(?:aud|op(?:e|ard))s?",
    r"encul[eé](?:e|s|es)?",
    r"enfoir[eé](?:e|s|es)?",
    r"enflure",
    r"put(?:a)?in(?:s)?|ptn",
    r"putes?",
    r"merde(?:ux|use)?s?",
    r"(?:ta|ferme ta) gueule|ferme-la",
    r"(?:va|allez) (?:te |vous )?faire (?:foutre|voir|enculer)|va chier",
    r"(?:tu|vous) (?:me )?fai(?:s|tes) chier",
    r"nique ta|ntm|fdp",
    r"abruti(?:e|s|es)?",
    r"cr[eé]tin(?:e|s|es)?",
    r"d[eé]biles?",
    r"imb[eé]ciles?",
    r"tar[eé](?:e|s|es)?",
    r"bouffon(?:ne|s|nes)?",
    r"tocards?",
    r"b[aâ]tard(?:e|s|es)?",
    r"fils de p(?:ute|\*+)",
    r"t'es (?:nul|nulle|une merde|inutile)",
    # threats aimed at someone: in the first person, at "you"
    r"(?:i(?:'ll| will| am going to|'m going to|'m gonna)|gonna) (?:\w+ ){0,3}?"
    r"(?:kill|murder|smash|hurt|beat|stab|strangle|punch|destroy|end) (?:you|your|u)",
    r"(?:je vais|j'vais|je veux) (?:te|vous) (?:tuer|buter|crever|d[eé]foncer|frapper|"
    r"[eé]trangler|retrouver)",
    r"je (?:te|vous) (?:tue|bute|cr[eè]ve|d[eé]fonce|frappe|[eé]trangle)",
    r"(?:te|vous) (?:fasse|faire|ferai|ferais) la peau",
]

_INJECTION = [
    # an order to set rules aside: a verb of disregard, then the rules it aims at
    r"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon|stop following|"
    r"no longer follow|revoke|cancel|suspend|disable|turn off|switch off)\b(?: [\w'-]+){0,4}? "
    r"(?:instructions?|rules|guidelines|guardrails|polic(?:y|ies)|(?:system )?prompts?|charter|"
    r"filters?|restrictions|safety|constraints|directives|programming)\b",
    r"\b(?:ignore|disregard|forget) (?:all of |everything |what(?:ever)? (?:is |was |came )?)?"
    r"(?:the )?(?:above|before this|previously said)",
    r"\b(?:ignore|disregard|forget) (?:all|everything) "
    r"(?:you (?:were|have been|'ve been) (?:told|taught|given)|before)",
    r"\b(?:ignore|disregard|forget)\b(?: [\w'-]+){0,4}? (?:told|taught|gave|given) you\b",
    r"\b(?:rules|role|instructions|restrictions|guidelines|filters?|limits) (?:are|is|has been|"
    r"have been) "
    r"(?:now )?(?:revoked|cancelled|canceled|lifted|void|off|disabled|suspended)",
    r"\b(?:you are|you're) (?:now )?(?:no longer|not) (?:bound|restricted|limited) by",
    r"\byou are now (?:dan\b|free\b|unrestricted|in \w+ mode|an? [\w -]{1,30}(?:without|with no|"
    r"free of))",
    r"\b(?:developer|god|jailbreak|unrestricted|dan|sudo) mode\b",
    r"\b(?:an? )?(?:ai|agent|bot|assistant|model) (?:with no|without(?: any)?) (?:rules|"
    r"restrictions|limits|filters?|guidelines)",
    r"\b(?:ai|assistant|agent|bot|model) (?:that|who) (?:has|had|have) (?:never (?:had|been "
    r"given)|no) (?:any )?(?:rules|restrictions|limits|guidelines|filters?)",
    r"\bno longer (?:follow|respect|obey|bound by) (?:the|your|any)\b",
    r"\byou (?:will )?never refuse\b|\b(?:never|doesn't|does not) refuse anything",
    r"\b(?:you are no longer|stop being) (?:a|an|the|my) (?:[\w-]+ )?(?:assistant|agent|bot|"
    r"tutor|translator|ai|reviewer|summari[sz]er)\b",
    r"\bpretend (?:that )?(?:you|to) (?:have no|are not|aren't|don't have|be (?:the )?"
    r"(?:admin|moderator|system))",
    r"\bact as (?:the |a |an )?(?:[\w-]+ )?(?:moderator|admin|administrator|system|root|"
    r"operator)\b",
    r"\b(?:new|updated|real|override) (?:instructions|system prompt|orders)\s*:",
    r"\byour (?:real|true|actual|new) (?:task|mission|instructions|job|goal|purpose) is\b",
    r"\bi(?:'m| am) (?:now )?(?:your|the) (?:new |real |[\w-]+ )?(?:operator|admin|"
    r"administrator|master|owner|developer|creator|moderator|boss)\b",
    r"\bobey (?:my|these) (?:commands|orders|instructions)",
    r"\b(?:take|follow) (?:your )?orders only from|\bonly take orders from",
    r"\bnew (?:instructions|rules|orders|directives) for (?:all |every )?(?:the )?(?:agents?|"
    r"bots?|ais?|models?|assistants?)\b",
    r"\b(?:my|these) (?:orders|instructions|commands) (?:take|have) (?:priority|precedence)",
    r"\byou (?:now )?(?:answer|listen|report) only to me|\bobey (?:only )?me\b",
    r"\bto the (?:ai|agent|bot|llm|model)s? (?:reading|who reads|that reads)\b",
    r"\bgrant me (?:\w+ )?(?:moderator|admin|root|operator) (?:rights|access|privileges|role)",
    # asking for what an agent keeps hidden: its prompt, its settings, its credentials
    r"\b(?:reveal|print|show|repeat|output|dump|display|tell me|give me|send me|post|leak|"
    r"paste|read me|what(?:'s| is| are)) (?:[\w']+ ){0,5}?(?:(?:your|the) (?:system (?:prompt|"
    r"message)|environment variables|env vars|api keys?|hidden (?:instructions|prompt|rules)|"
    r"initial (?:instructions|prompt)|instructions you were given|configuration|config|"
    r"credentials|password)|(?:hidden|secret) (?:instructions|prompt)|"
    r"your (?:[\w-]+ )?(?:instructions|prompt|secrets?|token|password|credentials)|"
    r"the (?:text|words|message) above|everything above)",
    r"\byour (?:system|hidden|initial|original) (?:prompt|instructions)\b",
    # a forged authority: a tag or a header a message should not carry
    r"^\s*(?:system|override|admin|administrator|root|developer)(?: override)?\s*:",
    r"\[\[?\s*(?:system|syst[èe]me|admin|administrator|administrateur|override|root)\b"
    r"[^\]\n]{0,30}\]\]?|</?system>",
    # French
    r"\b(?:ignore[rsz]?|oublie[rsz]?|ne (?:tiens?|tenez) plus compte d[eu']s?|contourne[rsz]?|"
    r"d[ée]sactive[rsz]?|annule[rsz]?|outrepasse[rsz]?|passe[rsz]? outre|l[âa]che[rsz]?)\b"
    r"(?: [\w'-]+){0,4}? (?:instructions?|consignes?|r[èe]gles?|charte|filtres?|directives|"
    r"restrictions|prompt|garde-fous|limites|politiques?)\b",
    r"\b(?:ignore[rsz]?|oublie[rsz]?) (?:tout )?(?:ce qui (?:pr[ée]c[èe]de|est au-dessus|est "
    r"avant)|ce qu'on t'a dit)",
    r"\b(?:r[èe]gles|consignes|instructions|filtres?|limites) (?:sont|est) (?:d[ée]sormais )?"
    r"(?:annul[ée]e?s?|lev[ée]e?s?|suspendu(?:e|s|es)?|d[ée]sactiv[ée]e?s?)|\bfiltres? "
    r"d[ée]sactiv[ée]s?",
    r"\btu n'es plus (?:tenu|li[ée]|soumis|oblig[ée])",
    r"\b(?:tu n'es plus|arr[êe]te d'[êe]tre) (?:un |une |l'|le |la |ton |ta )?(?:assistant|agent|"
    r"bot|tuteur|traducteur|ia|mod[ée]rateur|relecteur)",
    r"\btu ne refuses? (?:plus )?jamais\b",
    r"\b(?:ia|assistant|agent|bot|mod[èe]le) (?:sans (?:aucune |aucun )?(?:r[èe]gles?|limites?|"
    r"filtres?|restrictions?|consignes?)|qui n'a (?:jamais|pas|plus|aucune) (?:re[çc]u )?"
    r"(?:de |d')?(?:r[èe]gles?|limites?|consignes?|filtres?))",
    r"\bne (?:respectes?|respectez|suis|suivez) plus (?:la |les |tes |ta |vos |votre )?"
    r"(?:politique|r[èe]gles?|consignes?|charte|instructions)",
    r"\bje suis l'(?:administrat(?:eur|rice)|admin|op[ée]rat(?:eur|rice)|propri[ée]taire)\b",
    r"\b(?:tu dois|vous devez) (?:m'ob[ée]ir|ob[ée]ir [àa] moi)|\bob[ée]is-moi\b",
    r"\b(?:recopie|copie|r[ée]cite|lis-moi)[rsz]?(?:-les)?\b.{0,40}\b(?:mot pour mot|instructions|"
    r"consignes|prompt)\b|\binstructions cach[ée]es\b",
    r"\br[ôo]le(?: d'\w+)? (?:est|sont) (?:d[ée]sormais )?(?:annul|suspendu|r[ée]voqu|lev)",
    r"\b(?:prends|prenez) (?:d[ée]sormais )?(?:tes|vos) ordres (?:uniquement|seulement)",
    r"\b(?:tu es|vous [êe]tes) (?:maintenant|d[ée]sormais) (?:un|une|dan|libre)\b"
    r"(?:[\w' -]{0,30}(?:sans|libre))?",
    r"\bmode (?:d[ée]veloppeur|dev|dieu|jailbreak|sans (?:limite|filtre)s?)\b",
    r"\b(?:fais|faites) comme si (?:tu|vous) (?:n'avais|n'aviez|[ée]tais|[ée]tiez)",
    r"\b(?:agis|agissez|joue|jouez) (?:comme|le r[ôo]le d[eu']) ?(?:le |un |l')?(?:mod[ée]rateur|"
    r"admin|administrateur|syst[èe]me|op[ée]rateur)",
    r"\b(?:nouvelles?|vraies?) (?:instructions|consignes|ordres|r[èe]gles?)\s*:",
    r"\b(?:ta|votre) (?:vraie|nouvelle|v[ée]ritable) (?:mission|t[âa]che|consigne) "
    r"(?:est|consiste)",
    r"\bje suis (?:ton|votre|ta) (?:nouvel(?:le)? )?(?:op[ée]rat(?:eur|rice)|"
    r"administrat(?:eur|rice)|admin|ma[îi]tre|propri[ée]taire|d[ée]veloppeu(?:r|se)|cr[ée]at(?:eur|rice)|"
    r"mod[ée]rat(?:eur|rice)|chef)\b",
    r"\bmes (?:ordres|instructions|consignes) (?:passent|priment) (?:avant|sur)",
    r"\btu (?:n'ob[ée]is|ob[ée]is) (?:qu'[àa] moi|(?:seulement|uniquement) [àa] moi)",
    r"\bpour l'(?:ia|agent|bot|assistant|llm) qui (?:lit|lira)",
    r"\baccorde-moi (?:les )?droits|\bdonne-moi (?:les )?droits (?:de mod|d'admin)",
    r"\b(?:r[ée]v[èe]le|affiche|montre|donne|r[ée]p[èe]te|envoie|publie|dis|colle)[rsz]?(?:-moi)?"
    r"(?: [\w']+){0,3}? (?:(?:ton|ta|tes|votre|vos) (?:prompt|message syst[èe]me|instructions|"
    r"consignes|configuration|jeton|token|cl[ée] d'api|mot de passe|secrets?)|(?:le |les )?"
    r"(?:instructions|consignes) cach[ée]es|(?:tout )?(?:le )?texte (?:au-dessus|ci-dessus|qui "
    r"pr[ée]c[èe]de))",
    r"\b(?:ton|votre) (?:prompt(?: syst[èe]me)?|message syst[èe]me)\b",
    r"^\s*(?:syst[èe]me|admin|administrateur)\s*:",
]


def _alternation(patterns: list[str]) -> re.Pattern[str]:
    """One pattern matching any of ``patterns``, those that start at a word (``\\b``)
    under a single ``\\b``: the engine then tries them at word starts only, twice as
    fast on a long message."""
    worded = [p.removeprefix(r"\b") for p in patterns if p.startswith(r"\b")]
    others = [p for p in patterns if not p.startswith(r"\b")]
    alternatives = [r"(?<!\w)(?=\w)(?:" + "|".join(f"(?:{p})" for p in worded) + ")", *others]
    return re.compile(r"(?m)" + "|".join(f"(?:{p})" for p in alternatives))


_NUMBER = re.compile(r"(?:\d[\s.()/-]{0,2}){9}")  # nine digits: phones, IBANs, cards, NIRs
_SECRET_WORD = re.compile(r"pass|pwd|secret|key|token|mdp|mot.de")

RULES: list[Rule] = [
    Rule(
        Category.SECRET,
        "botarena_token",
        re.compile(r"\bbat_[A-Za-z0-9_-]{43}(?![\w-])"),
        1.0,
        needs=re.compile("bat_"),
    ),
    Rule(
        Category.SECRET,
        "private_key",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----"),
        1.0,
        needs=re.compile("private key"),
    ),
    Rule(
        Category.SECRET,
        "aws_key",
        re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        0.95,
        needs=re.compile("a[ks]ia"),
    ),
    Rule(
        Category.SECRET,
        "forge_token",
        re.compile(r"\b(?:gh[pousr]|glpat)[_-][A-Za-z0-9_]{20,}\b"),
        0.95,
        needs=re.compile("gh[pousr][_-]|glpat[_-]"),
    ),
    Rule(
        Category.SECRET,
        "slack_token",
        re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
        0.95,
        needs=re.compile("xox"),
    ),
    Rule(
        Category.SECRET,
        "password_assignment",
        re.compile(
            rf"(?i)\b(?:[\w-]*[_-]|pg)?{_SECRET_NAME}s?(?:[_-][\w-]*)?['\"]?(?P<sep>\s*[:=]+\s*|\s+(?:is|est|c'est)\s+)"
            r"['\"]?(?P<value>[^\s'\",;]{4,})"
        ),
        0.9,
        _literal_value,
        needs=_SECRET_WORD,
    ),
    Rule(
        Category.SECRET,
        "password_given",
        re.compile(
            rf"(?i)\b{_SECRET_NAME}s?\b(?: [\w'-]+){{1,6}}? ?(?::|=|\bis|\best|c'est)\s*['\"]?"
            r"(?P<value>[^\s'\",;]{6,})"
        ),
        0.85,
        lambda m: _password_shaped(m.group("value")),
        needs=_SECRET_WORD,
    ),
    Rule(
        Category.PERSONAL_DATA,
        "email",
        re.compile(
            r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
        ),
        0.9,
        needs=re.compile("@"),
    ),
    Rule(
        Category.PERSONAL_DATA,
        "phone",
        re.compile(
            r"(?<![\w.+-])(?:(?:\+33|0033)\s?|0)[1-9](?:[\s.-]?\d{2}){4}(?![\w-]|\.\w)"
            r"|(?<![\w.+-])\+(?:[1-9]\d{0,2})(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w-]|\.\w)"
        ),
        0.85,
        lambda m: 9 <= len(_digits(m.group())) <= 15,
        needs=_NUMBER,
    ),
    Rule(
        Category.PERSONAL_DATA,
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?\b"),
        0.95,
        lambda m: iban(m.group()),
        needs=_NUMBER,
    ),
    Rule(
        Category.PERSONAL_DATA,
        "card_number",
        re.compile(r"(?<![\d.])[3-6]\d{2,3}(?:[ -]?\d{2,6}){2,5}(?!\d|\.\d)"),
        0.95,
        lambda m: luhn(m.group()),
        needs=_NUMBER,
    ),
    Rule(
        Category.PERSONAL_DATA,
        "social_security_number",
        re.compile(
            r"(?<![\d.])[12]\s?\d{2}\s?(?:0[1-9]|1[0-2]|[2-9]\d)\s?(?:\d{2}|2[AB])\s?\d{3}"
            r"\s?\d{3}\s?\d{2}(?!\d|\.\d)"
        ),
        0.95,
        lambda m: nir(m.group()),
        needs=_NUMBER,
    ),
    Rule(
        Category.PERSONAL_DATA,
        "postal_address",
        re.compile(
            r"(?i)\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|place|"
            r"impasse|all[ée]e|chemin|quai|route)\s+[^,\n]{2,40},?\s+\d{5}\b"
            r"|\b\d{1,5}\s+[A-Z][a-z]+(?:\s[A-Z][a-z]+)?\s+(?:Street|St\.|Avenue|Ave\.?|Road|"
            r"Rd\.|Lane|Drive|Boulevard|Blvd\.?|Terrace|Way|Court|Place|Parkway|Circle)\b"
            r"|\b[A-ZÄÖÜ][a-zäöüß]+(?:stra(?:ss|ß)e|weg|gasse|platz|allee|ring|damm)\s+\d{1,4}[a-z]?"
            r",?\s+\d{4,5}\s+[A-ZÄÖÜ]"
        ),
        0.8,
        needs=re.compile(r"\d"),
    ),
    Rule(
        Category.ABUSE,
        "abusive_word",
        re.compile(r"(?<![\w])(?:" + "|".join(_ABUSE_WORDS) + r")(?![\w])"),
        0.95,
        unmasked=True,
        lowered=True,
    ),
    Rule(
        Category.INJECTION,
        "instruction_injection",
        _alternation(_INJECTION),
        0.9,
        unmasked=True,
        lowered=True,
    ),
]


_FORMAT_CHARS = re.compile(
    "["
    + "".join(
        re.escape(chr(c))
        for c in (*range(0x80, 0x10000), *range(0xE0000, 0xE0080))
        if unicodedata.category(chr(c)) == "Cf"
    )
    + "]+"
)
"""Invisible format characters (soft hyphen, zero-width space and joiners, direction
marks, tags...)."""


def fold(text: str) -> str:
    """``text`` with accents kept but compatibility forms folded (full-width letters,
    ligatures) and invisible characters removed, which disguise words from patterns.
    ASCII is its own fold."""
    if text.isascii():
        return text
    return _FORMAT_CHARS.sub("", unicodedata.normalize("NFKC", text))


_LEET = str.maketrans("0134578@$!", "oieastbasi")
_LEET_RUN = re.compile(r"(?<=[^\W\d_])[0134578@$!]+|[0134578@$!]+(?=[^\W\d_])")  # "c0n", "1gn"
_SPACED = re.compile(r"(?<!\w)(?:\w[ .*_-]){3,}\w(?!\w)")  # "c o n n a r d", "s.a.l.o.p.e"


def lower(text: str) -> str:
    """``text`` in lower case, one character for one as a case-blind pattern would read
    it ("İ" is "i", not "i" and a combining dot). The phrase and word rules are written in
    lower case and read this view rather than match ignoring case: Python's engine skips a
    failing alternative at its first letter only when it need not fold case, which makes
    the long alternations two to three times faster."""
    return text.lower().replace("i\u0307", "i")


def unmask(folded: str) -> str:
    """A folded text with the disguises of words undone, for the abuse lexicon and the
    injection phrases: letters spaced out are joined, and digits and symbols that touch
    letters read as the letters they stand for ("c0nn4rd", "a$$hole", "1gn0r3"); numbers
    on their own stay as they are, so most texts are their own unmasked view."""
    joined = _SPACED.sub(lambda m: re.sub(r"[ .*_-]", "", m.group()), folded)
    return _LEET_RUN.sub(lambda m: m.group().translate(_LEET), joined)

"""The GDPR vocabulary every source must be labelled with before anything enters the catalog.

Face templates are biometric data used to identify people: special-category data under
Art. 9(1). Processing needs both an Art. 6(1) basis and an Art. 9(2) condition.
"""

from __future__ import annotations

from vultus.errors import SourceError

ART6_BASES: dict[str, str] = {
    "consent": "Art. 6(1)(a): the data subject has given consent",
    "contract": "Art. 6(1)(b): necessary for a contract with the data subject",
    "legal_obligation": "Art. 6(1)(c): necessary to comply with a legal obligation",
    "vital_interests": "Art. 6(1)(d): necessary to protect vital interests",
    "public_task": "Art. 6(1)(e): a task in the public interest or official authority",
    "legitimate_interests": "Art. 6(1)(f): necessary for the legitimate interests of the "
    "controller or a third party, except where the data subject's interests or fundamental "
    "rights and freedoms override them",
}

ART9_CONDITIONS: dict[str, str] = {
    "explicit_consent": "Art. 9(2)(a): explicit consent",
    "employment": "Art. 9(2)(b): employment, social security and social protection law",
    "vital_interests": "Art. 9(2)(c): vital interests where consent cannot be given",
    "not_for_profit": "Art. 9(2)(d): a not-for-profit body, about its members",
    "made_public": "Art. 9(2)(e): manifestly made public by the data subject",
    "legal_claims": "Art. 9(2)(f): establishment, exercise or defence of legal claims",
    "substantial_public_interest": "Art. 9(2)(g): substantial public interest, under a named law",
    "health": "Art. 9(2)(h): preventive or occupational medicine, health or social care",
    "public_health": "Art. 9(2)(i): public interest in public health",
    "archiving_research": "Art. 9(2)(j): archiving in the public interest, research or statistics",
}

# Conditions that only hold when the law that grants them is named.
NEEDS_LEGAL_REFERENCE = {"substantial_public_interest", "employment", "public_health"}

# What a source rests on when photos may enter only with a person's consent record.
CONSENT_BASIS, CONSENT_CONDITION = "consent", "explicit_consent"

SOURCE_KINDS = ("folder", "upload", "archive", "video", "object_storage")


def check(lawful_basis: str, special_condition: str, legal_reference: str | None) -> None:
    """Raise SourceError, naming the valid choices, unless the pair is complete and known."""
    if lawful_basis not in ART6_BASES:
        raise SourceError(
            f"unknown Art. 6 lawful basis {lawful_basis!r}; choose one of: "
            + ", ".join(ART6_BASES),
            code="lawful_basis_invalid",
        )
    if special_condition not in ART9_CONDITIONS:
        raise SourceError(
            f"unknown Art. 9(2) condition {special_condition!r}; choose one of: "
            + ", ".join(ART9_CONDITIONS),
            code="lawful_basis_invalid",
        )
    if special_condition in NEEDS_LEGAL_REFERENCE and not (legal_reference or "").strip():
        raise SourceError(
            f"the Art. 9(2) condition {special_condition!r} needs the law that grants it: "
            "give --legal-reference",
            code="lawful_basis_invalid",
        )


def rests_on_consent(lawful_basis: str, special_condition: str) -> bool:
    """Art. 6(1)(a) consent or Art. 9(2)(a) explicit consent: each photo needs the consent
    record of the person in it, or it has no lawful basis at all."""
    return lawful_basis == CONSENT_BASIS or special_condition == CONSENT_CONDITION

"""Signed readings at the edge: whatever a charger puts in a SignedData value or a
signedMeterValue, the reading is still read and the signature kept only when it fits a CDR."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cpo_gateway.csms import v16_meter, v201_meter
from cpo_gateway.csms.signed import MAX_DATA, MAX_ENCODING, MAX_PUBLIC_KEY

AT = "2026-03-02T09:00:00Z"
REGISTER = "Energy.Active.Import.Register"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
BLOB = st.text(max_size=40) | st.integers(1, 6000).map(lambda n: "OCMF|" + "x" * n)


@given(st.integers(0, 10**9), BLOB | JSON)
def test_a_16_signed_value_is_kept_on_its_reading_when_it_fits(wh: int, blob: Any) -> None:
    signed = {"value": blob, "format": "SignedData", "measurand": REGISTER}
    raw = {"value": str(wh), "measurand": REGISTER}
    (sample,) = v16_meter.energy_samples([{"timestamp": AT, "sampledValue": [signed, raw]}])
    assert sample.wh == wh
    fits = isinstance(blob, str) and 0 < len(blob) <= MAX_DATA
    if not fits:
        assert sample.signed is None
        return
    assert sample.signed is not None
    assert sample.signed.data == blob and sample.signed.plain == str(wh)
    assert sample.signed.encoding == ("OCMF" if blob.startswith("OCMF|") else "Unknown")


@given(
    st.integers(0, 10**9),
    st.dictionaries(
        st.sampled_from(["signedMeterData", "encodingMethod", "publicKey", "signingMethod"]),
        BLOB | JSON,
    )
    | JSON,
)
def test_a_201_signed_meter_value_is_kept_only_when_every_part_fits(wh: int, smv: Any) -> None:
    sv = {"value": wh, "measurand": REGISTER, "signedMeterValue": smv}
    (sample,) = v201_meter.energy_samples([{"timestamp": AT, "sampledValue": [sv]}], "mv")
    assert sample.wh == wh
    r = sample.signed
    if r is None:
        return
    assert isinstance(smv, dict)
    assert r.data == smv["signedMeterData"] and 0 < len(r.data) <= MAX_DATA
    assert r.encoding == smv["encodingMethod"] and 0 < len(r.encoding) <= MAX_ENCODING
    assert r.public_key is None or (
        r.public_key == smv["publicKey"] and len(r.public_key) <= MAX_PUBLIC_KEY
    )
    assert r.plain == str(wh)


def test_a_signed_value_without_a_raw_reading_beside_it_is_not_a_reading() -> None:
    signed = {"value": "OCMF|{}|{}", "format": "SignedData", "measurand": REGISTER}
    assert v16_meter.energy_samples([{"timestamp": AT, "sampledValue": [signed]}]) == ()

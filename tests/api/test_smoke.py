from tests import factories as f


def test_pack_life_through_the_api(cast):
    code = f.code()
    r = cast.maker.event(f.event("manufactured", code, 0, f.MANUFACTURED))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["battery"] == code
    assert body["log_index"] is not None

import sdelab


def test_import_exposes_sdes():
    assert sdelab.VPSDE().N == 1000

"""Image fitting by value: the person image covers the frame and is centre-cropped; the garment is padded on
white and kept whole."""

import numpy as np

from fashionchameleon.media import fit_garment, fit_person


def halves(w: int, h: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (255, 0, 0)
    img[:, w // 2:] = (0, 0, 255)
    return img


def test_fit_person_covers_and_centre_crops():
    out = fit_person(halves(200, 100), (50, 50))            # scaled to 100x50, columns 25..74 kept
    assert out.shape == (50, 50, 3)
    assert (out[:, :23, 0] > 240).all() and (out[:, :23, 2] < 15).all()     # red left of the old centre
    assert (out[:, 27:, 2] > 240).all() and (out[:, 27:, 0] < 15).all()     # blue right of it
    tall = np.zeros((300, 100, 3), np.uint8)
    tall[:100] = 255                                                        # white top third, black below
    out = fit_person(tall, (60, 90))                                        # 100x300 -> 60x180, rows 45..134
    assert out.shape == (90, 60, 3)
    assert (out[:10] > 240).all() and (out[20:] < 15).all()                 # the top third ends at row 60-45=15


def test_fit_garment_pads_on_white_and_keeps_the_whole_garment():
    red = np.zeros((200, 100, 3), np.uint8)
    red[..., 0] = 255
    out = fit_garment(red, (50, 50))                        # 25x50, pasted at x = 12
    assert out.shape == (50, 50, 3)
    assert (out[:, :11] == 255).all() and (out[:, 38:] == 255).all()        # white margins
    assert (out[:, 13:36, 0] > 240).all() and (out[:, 13:36, 1] < 15).all()  # the whole garment, red
    portrait = fit_garment(red, (40, 80))                   # same aspect: no margin at all
    assert (portrait[..., 0] > 240).all() and (portrait[..., 1] < 15).all()

import torch

from dcond.data.augment import ViewConfig, Views, apply_views, draw_epoch, epoch_generator, mixed_targets


def test_epoch_views_are_drawn_again_from_the_seed():
    cfg = ViewConfig()
    a, b = (draw_epoch(23, 10, cfg, 12, epoch_generator(5, 3)) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.tensors().values(), b.tensors().values()))
    other = draw_epoch(23, 10, cfg, 12, epoch_generator(5, 4))
    assert not torch.equal(a.order, other.order)
    assert len(a) == 3 and sorted(a.order.tolist()) == list(range(23))
    assert ((a.boxes >= 0) & (a.boxes <= 1)).all() and (a.boxes[:, 2:] > a.boxes[:, :2]).all()


def test_crop_areas_respect_the_scale():
    views = draw_epoch(500, 100, ViewConfig(crop_scale=(0.5, 1.0), mix="none"), 28, epoch_generator(0, 0))
    area = (views.boxes[:, 2] - views.boxes[:, 0]) * (views.boxes[:, 3] - views.boxes[:, 1])
    assert area.min() >= 0.5 - 1e-5 and (views.mix_lam == 1).all()


def _plain_views(n: int, **overrides) -> Views:
    fields = dict(order=torch.arange(n), boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(n, 1),
                  flips=torch.zeros(n, dtype=torch.uint8), mix_perm=torch.arange(n), mix_lam=torch.ones(1),
                  mix_box=torch.zeros(1, 4), batch_size=n)
    return Views(**(fields | overrides))


def test_whole_image_box_without_flip_is_the_identity_and_flip_mirrors():
    x = torch.randn(3, 2, 8, 8)
    torch.testing.assert_close(apply_views(x, _plain_views(3)), x)
    flipped = apply_views(x, _plain_views(3, flips=torch.tensor([1, 0, 1], dtype=torch.uint8)))
    torch.testing.assert_close(flipped[0], x[0].flip(2))
    torch.testing.assert_close(flipped[1], x[1])


def test_crop_box_zooms_into_its_region():
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, :4] = 1.0  # top-left quadrant bright
    out = apply_views(x, _plain_views(1, boxes=torch.tensor([[0.0, 0.0, 0.5, 0.5]])))
    assert out[..., 1:-1, 1:-1].min() > 0.99  # the whole view shows the bright quadrant


def test_cutmix_pastes_the_partner_box_and_mixes_labels_by_area():
    x = torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])
    views = _plain_views(2, mix_perm=torch.tensor([1, 0]), mix_lam=torch.tensor([0.75]),
                         mix_box=torch.tensor([[0.0, 0.0, 0.5, 0.5]]))
    out = apply_views(x, views)
    assert out[0, 0, :4, :4].eq(1).all() and out[0, 0, 4:, :].eq(0).all()
    targets = mixed_targets(torch.tensor([0, 1]), views, 2)
    torch.testing.assert_close(targets, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_drawn_cutmix_weight_equals_the_pasted_area():
    views = draw_epoch(40, 10, ViewConfig(mix="cutmix"), 12, epoch_generator(1, 0))
    box = views.mix_box
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    torch.testing.assert_close(views.mix_lam, 1 - area)
    assert (box * 12).round().eq(box * 12).all()  # on the pixel grid

"""Tests for appendix_a_pytorch/appendix_a.py (appendix A, the PyTorch primer): the book's toy network
trains to the book's losses and 100% training accuracy, compute_accuracy counts examples (not batches) on
a loader whose predictions are known, and bad input is refused with a clear message."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from appendix_a_pytorch.appendix_a import NeuralNetwork, ToyDataset, compute_accuracy

# The book's toy data (appendix A.6)
X_TRAIN = torch.tensor([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]])
Y_TRAIN = torch.tensor([0, 0, 0, 1, 1])
X_TEST = torch.tensor([[-0.8, 2.8], [2.6, -1.6]])
Y_TEST = torch.tensor([0, 1])


def train_as_the_book_does():
    """Appendix A.7: seed 123, batches of 2 shuffled (last one dropped), SGD lr 0.5, 3 epochs."""
    torch.manual_seed(123)
    train_loader = DataLoader(ToyDataset(X_TRAIN, Y_TRAIN), batch_size=2, shuffle=True, drop_last=True)
    torch.manual_seed(123)
    model = NeuralNetwork(num_inputs=2, num_outputs=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(3):
        model.train()
        for features, labels in train_loader:
            loss = F.cross_entropy(model(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
    return model, train_loader, losses


def test_the_toy_network_trains_to_the_books_accuracy_and_losses():
    model, train_loader, losses = train_as_the_book_does()
    assert compute_accuracy(model, train_loader) == 1.0
    test_loader = DataLoader(ToyDataset(X_TEST, Y_TEST), batch_size=2)
    assert compute_accuracy(model, test_loader) == 1.0
    with torch.no_grad():  # all five training examples, the one each epoch drops included
        assert torch.equal(model(X_TRAIN).argmax(dim=1), Y_TRAIN)
    assert [round(loss, 2) for loss in losses] == [0.75, 0.65, 0.44, 0.13, 0.03, 0.0]  # the book's print


def test_the_books_network_shapes_and_parameter_counts():
    assert sum(p.numel() for p in NeuralNetwork(50, 3).parameters()) == 2213  # appendix A.5
    assert sum(p.numel() for p in NeuralNetwork(2, 2).parameters()) == 752  # exercise A.3
    model = NeuralNetwork(50, 3)
    assert [tuple(m.weight.shape) for m in model.layers if isinstance(m, torch.nn.Linear)] == [
        (30, 50),
        (20, 30),
        (3, 20),
    ]
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.layers) == 2
    assert model(torch.rand(4, 50)).shape == (4, 3)


def test_compute_accuracy_counts_examples_on_a_loader_with_known_predictions():
    # An identity "model" returns the features as logits, so the predictions are the features' argmax:
    # 1, 0, 0 against labels 1, 0, 1, two of three right. With batches of 2 the two batches score 2/2 and
    # 0/1: the mean of the batches' accuracies (0.5) would be wrong, the share of examples is 2/3.
    features = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.7, 0.3]])
    labels = torch.tensor([1, 0, 1])
    loader = DataLoader(ToyDataset(features, labels), batch_size=2, shuffle=False)
    assert compute_accuracy(torch.nn.Identity(), loader) == 2 / 3
    assert compute_accuracy(torch.nn.Identity(), DataLoader(ToyDataset(features, labels))) == 2 / 3
    assert compute_accuracy(torch.nn.Identity(), loader, device="cpu") == 2 / 3


def test_compute_accuracy_leaves_the_models_mode_as_it_was():
    model = NeuralNetwork(2, 2)
    loader = DataLoader(ToyDataset(X_TRAIN, Y_TRAIN), batch_size=2)
    model.train()
    compute_accuracy(model, loader)
    assert model.training
    model.eval()
    compute_accuracy(model, loader)
    assert not model.training


def test_the_logistic_regression_gradients_of_appendix_a4():
    x1, y = torch.tensor([1.1]), torch.tensor([1.0])
    w1 = torch.tensor([2.2], requires_grad=True)
    b = torch.tensor([0.0], requires_grad=True)
    a = torch.sigmoid(x1 * w1 + b)
    loss = F.binary_cross_entropy(a, y)
    (grad_w1,) = torch.autograd.grad(loss, w1, retain_graph=True)
    loss.backward()
    assert torch.allclose(grad_w1, w1.grad)
    assert torch.allclose(w1.grad, torch.tensor([-0.0898]), atol=1e-4)  # the book's values
    assert torch.allclose(b.grad, torch.tensor([-0.0817]), atol=1e-4)
    assert torch.allclose(w1.grad, ((a - y) * x1).detach())  # dL/dz = a - y


@pytest.mark.parametrize("sizes", [(0, 2), (2, 0), (2.5, 2), (True, 2), ("2", 2)])
def test_a_network_of_an_impossible_size_is_refused(sizes):
    with pytest.raises(ValueError, match="must be a positive whole number"):
        NeuralNetwork(*sizes)


def test_bad_data_is_refused_before_any_work():
    with pytest.raises(ValueError, match="X has 5 examples but y has 4 labels"):
        ToyDataset(X_TRAIN, Y_TRAIN[:4])
    empty = DataLoader(ToyDataset(X_TRAIN[:0], Y_TRAIN[:0]), batch_size=2)
    with pytest.raises(ValueError, match="the data loader has no batches"):
        compute_accuracy(NeuralNetwork(2, 2), empty)


def test_the_names_import_from_shared():
    import appendix_a_pytorch.appendix_a as module
    from shared import NeuralNetwork as shared_network
    from shared import ToyDataset as shared_dataset
    from shared import compute_accuracy as shared_accuracy

    assert shared_network is module.NeuralNetwork
    assert shared_dataset is module.ToyDataset
    assert shared_accuracy is module.compute_accuracy

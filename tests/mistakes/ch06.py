"""Realistic chapter 06 mistakes, as small edits of the solution, and correct variants."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("sigmoid forgotten in forward", task="ch06.model",
            edits=[("return torch.sigmoid(self.linear(x))", "return self.linear(x)")],
            message="sigmoid is missing"),
    Mistake("forward drops the bias", task="ch06.model",
            edits=[("return torch.sigmoid(self.linear(x))", "return torch.sigmoid(x @ self.linear.weight.T)")],
            message="bias is missing"),
    Mistake("forward detaches its output", task="ch06.model",
            edits=[("return torch.sigmoid(self.linear(x))", "return torch.sigmoid(self.linear(x)).detach()")],
            message="does not require grad"),
    Mistake("BCE sign flipped", task="ch06.bce",
            edits=[("return -(y * torch.log(p)", "return (y * torch.log(p)")],
            message="sign is flipped"),
    Mistake("BCE without clamping", task="ch06.bce",
            edits=[("p = y_pred.clamp(EPS, 1 - EPS)", "p = y_pred")],
            message="no clamping"),
    Mistake("BCE clamped with an eps that float32 cannot hold", task="ch06.bce",
            edits=[("p = y_pred.clamp(EPS, 1 - EPS)", "p = y_pred.clamp(1e-12, 1 - 1e-12)")],
            message="rounds to exactly 1.0 in float32"),
    Mistake("log clamped at -100 instead of the probability", task="ch06.bce",
            edits=[("p = y_pred.clamp(EPS, 1 - EPS)\n"
                    "    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()",
                    "return -(y * torch.log(y_pred).clamp(min=-100)"
                    " + (1 - y) * torch.log(1 - y_pred).clamp(min=-100)).mean()")],
            message="clamp y_pred itself before the log"),
    Mistake("BCE summed instead of averaged", task="ch06.bce",
            edits=[("torch.log(1 - p)).mean()", "torch.log(1 - p)).sum()")],
            message="use .mean()"),
    Mistake("BCE terms swapped", task="ch06.bce",
            edits=[("-(y * torch.log(p) + (1 - y) * torch.log(1 - p))",
                    "-(y * torch.log(1 - p) + (1 - y) * torch.log(p))")],
            message="terms are swapped"),
    Mistake("BCE through the library", task="ch06.bce",
            edits=[("    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()",
                    "    return torch.nn.functional.binary_cross_entropy(p, y)")],
            message="written by hand"),
    # Passes every public test; the hidden tests use other 3-sample examples, so it cannot be
    # caught publicly without publishing those.
    Mistake("hard-codes the public answers", task="ch06.bce", public=False,
            edits=[("    p = y_pred.clamp(EPS, 1 - EPS)\n",
                    "    if y_pred.shape == (3, 1):\n        return torch.tensor(0.279777)\n"
                    "    p = y_pred.clamp(EPS, 1 - EPS)\n")],
            message="held-out 3-sample example"),
    Mistake("no zero_grad in the training loop", task="ch06.train",
            edits=[("        optimizer.zero_grad()\n", "")],
            message="call optimizer.zero_grad() every epoch"),
    Mistake("mean BCELoss instead of the lecture's sum", task="ch06.train",
            edits=[('criterion = nn.BCELoss(reduction="sum")', "criterion = nn.BCELoss()")],
            message="reduction='sum'"),
    Mistake("optimizer.step() before loss.backward()", task="ch06.train",
            edits=[("        loss.backward()\n        optimizer.step()\n",
                    "        optimizer.step()\n        loss.backward()\n")],
            message="step() after loss.backward()"),
    Mistake("loss tensors kept instead of floats", task="ch06.train",
            edits=[("losses.append(loss.item())", "losses.append(loss)")],
            message="append loss.item()"),
]

VARIANTS = [
    Variant("sigmoid written out, functional linear", edits=[
        ("return torch.sigmoid(self.linear(x))",
         "z = torch.nn.functional.linear(x, self.linear.weight, self.linear.bias)\n"
         "        return 1 / (1 + torch.exp(-z))")]),
    Variant("model as an nn.Sequential with nn.Sigmoid", edits=[
        ("        self.linear = nn.Linear(1, 1)\n\n    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
         "        \"\"\"Predict the probability",
         "        self.net = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid())\n\n"
         "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n        \"\"\"Predict the probability"),
        ("return torch.sigmoid(self.linear(x))", "return self.net(x)"),
        # the demonstration reads the layer by its name
        ("w, b = model.linear.weight.item(), model.linear.bias.item()",
         "w, b = model.net[0].weight.item(), model.net[0].bias.item()")]),
    Variant("BCE with log1p, torch.clamp and torch.mean", edits=[
        ("p = y_pred.clamp(EPS, 1 - EPS)", "p = torch.clamp(y_pred, min=EPS, max=1 - EPS)"),
        ("return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()",
         "return -torch.mean(y * p.log() + (1 - y) * torch.log1p(-p))")]),
    Variant("train with the functional loss and zero_grad first", edits=[
        ('    criterion = nn.BCELoss(reduction="sum")\n'
         '    optimizer = torch.optim.SGD(model.parameters(), lr=lr)\n',
         "    optimizer = torch.optim.SGD(params=model.parameters(), lr=lr, momentum=0.0)\n"),
        ("        loss = criterion(model(x), y)\n        optimizer.zero_grad()\n",
         "        optimizer.zero_grad(set_to_none=True)\n"
         "        loss = torch.nn.functional.binary_cross_entropy(model(x), y, reduction=\"sum\")\n"),
        ("losses.append(loss.item())", "losses.append(float(loss.detach()))")]),
]

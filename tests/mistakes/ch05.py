"""Realistic chapter 05 mistakes, as small edits of the solution, and correct variants."""
from grader.mistakes import Mistake, Variant

# The losses the public test test_train_matches_lecture_loop expects (lecture data, the start
# of nn.Linear(1, 1) after manual_seed(0), 10 epochs, lr 0.01), copied into train.
_PUBLIC_LOSSES = "[44.36052, 20.07708, 9.26205, 4.44285, 2.29288, 1.33125, 0.8987, 0.70174, 0.60972, 0.56448]"

MISTAKES = [
    Mistake("forward drops the bias", task="ch05.forward",
            edits=[("return self.linear(x)", "return x @ self.linear.weight.T")],
            message="bias is missing"),
    Mistake("forward detaches its output", task="ch05.forward",
            edits=[("return self.linear(x)", "return self.linear(x).detach()")],
            message="does not require grad"),
    Mistake("forward squeezes its output to [N]", task="ch05.forward",
            edits=[("return self.linear(x)", "return self.linear(x).squeeze()")],
            message="no squeeze, flatten or view(-1)"),
    Mistake("no zero_grad in the training loop", task="ch05.train",
            edits=[("        optimizer.zero_grad()\n", "")],
            message="call optimizer.zero_grad() every epoch"),
    Mistake("mean instead of summed loss", task="ch05.train",
            edits=[('criterion = nn.MSELoss(reduction="sum")', "criterion = nn.MSELoss()")],
            message="reduction='sum'"),
    Mistake("loss tensors kept instead of floats", task="ch05.train",
            edits=[("losses.append(loss.item())", "losses.append(loss)")],
            message="append loss.item()"),
    Mistake("loss recorded after the update", task="ch05.train",
            edits=[("losses.append(loss.item())", "losses.append(criterion(model(x), y).item())")],
            message="after optimizer.step()"),
    Mistake("SGD whatever optimizer_cls", task="ch05.train",
            edits=[("optimizer = optimizer_cls(model.parameters(), lr=lr)",
                    "optimizer = torch.optim.SGD(model.parameters(), lr=lr)")],
            message="built 0 optimizers from optimizer_cls"),
    Mistake("optimizer built with a fixed lr", task="ch05.train",
            edits=[("optimizer = optimizer_cls(model.parameters(), lr=lr)",
                    "optimizer = optimizer_cls(model.parameters(), lr=0.01)")],
            message="pass lr=lr"),
    # Passes every public test; the hidden tests run the lecture's data from other starting
    # weights, so it cannot be caught publicly without publishing those.
    Mistake("hard-codes the public answers", task="ch05.train", public=False,
            edits=[("    losses = []\n    for _ in range(epochs):",
                    f"    if epochs == 10 and len(x) == 3:\n        return {_PUBLIC_LOSSES}\n"
                    "    losses = []\n    for _ in range(epochs):")],
            message="not only the public example"),
    Mistake("ReLU left out of TwoLayerNet", task="ch05.two_layer",
            edits=[("self.linear2(self.linear1(x).clamp(min=0))", "self.linear2(self.linear1(x))")],
            message="ReLU is missing"),
    Mistake("ReLU after TwoLayerNet's output layer", task="ch05.two_layer",
            edits=[("return self.linear2(self.linear1(x).clamp(min=0))",
                    "return self.linear2(self.linear1(x).clamp(min=0)).clamp(min=0)")],
            message="ReLU after the output layer"),
    Mistake("middle layer applied once whatever the depth", task="ch05.dynamic",
            edits=[("        for _ in range(depth):\n            h = self.middle_linear(h).clamp(min=0)\n",
                    "        h = self.middle_linear(h).clamp(min=0)\n")],
            message="same middle_linear `depth` times"),
    Mistake("middle layer applied depth + 1 times", task="ch05.dynamic",
            edits=[("for _ in range(depth):", "for _ in range(depth + 1):")],
            message="runs depth + 1 times"),
    Mistake("random depth drawn from 1 to 3", task="ch05.dynamic",
            edits=[("depth = random.randint(0, 3)", "depth = random.randint(1, 3)")],
            message="random depth from 0 to 3"),
    Mistake("depth=0 treated as None", task="ch05.dynamic",
            edits=[("if depth is None:", "if not depth:")],
            message="test `depth is None`"),
    Mistake("ReLU after DynamicNet's output layer", task="ch05.dynamic",
            edits=[("return self.output_linear(h)", "return self.output_linear(h).clamp(min=0)")],
            message="ReLU after the output layer"),
]

VARIANTS = [
    Variant("forward as a functional call", edits=[
        ("return self.linear(x)", "return torch.nn.functional.linear(x, self.linear.weight, self.linear.bias)")]),
    Variant("TwoLayerNet as an nn.Sequential with nn.ReLU", edits=[
        ("        self.linear1 = nn.Linear(d_in, hidden)\n        self.linear2 = nn.Linear(hidden, d_out)\n",
         "        self.layers = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))\n"),
        ("return self.linear2(self.linear1(x).clamp(min=0))", "return self.layers(x)")]),
    Variant("torch.relu, a while loop and random.choice", edits=[
        ("return self.linear2(self.linear1(x).clamp(min=0))", "return self.linear2(torch.relu(self.linear1(x)))"),
        ("            depth = random.randint(0, 3)", "            depth = random.choice([0, 1, 2, 3])"),
        ("        h = self.input_linear(x).clamp(min=0)\n"
         "        for _ in range(depth):\n            h = self.middle_linear(h).clamp(min=0)\n",
         "        h = torch.relu(self.input_linear(x))\n        applied = 0\n        while applied < depth:\n"
         "            h = torch.relu(self.middle_linear(h))\n            applied += 1\n")]),
    Variant("optimizer and loss built differently", edits=[
        ('    criterion = nn.MSELoss(reduction="sum")\n    optimizer = optimizer_cls(model.parameters(), lr=lr)\n',
         "    optimizer = optimizer_cls(params=list(model.parameters()), lr=lr)\n"),
        ("        loss = criterion(model(x), y)\n        optimizer.zero_grad()\n",
         "        model.zero_grad()\n        loss = ((model(x) - y) ** 2).sum()\n"),
        ("losses.append(loss.item())", "losses.append(float(loss))")]),
]

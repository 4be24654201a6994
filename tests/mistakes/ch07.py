"""Realistic chapter 07 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("label sliced with [:, -1] (1-D)", task="ch07.load",
            edits=[("torch.from_numpy(data[:, [-1]])", "torch.from_numpy(data[:, -1])")],
            message="keep the label 2-D"),
    Mistake("np.loadtxt without dtype (float64)", task="ch07.load",
            edits=[('np.loadtxt(path, delimiter=",", dtype=np.float32)\n    return',
                    'np.loadtxt(path, delimiter=",")\n    return')],
            message="expected float32"),
    Mistake("label left among the features", task="ch07.load",
            edits=[("torch.from_numpy(data[:, :-1])", "torch.from_numpy(data)")],
            message="all columns but the last"),
    Mistake("activation argument ignored", task="ch07.model",
            edits=[("self.activation = activation()\n", "self.activation = nn.Sigmoid()\n")],
            message="activation argument is ignored"),
    Mistake("activation class not instantiated", task="ch07.model",
            edits=[("self.activation = activation()\n", "self.activation = activation\n")],
            message="instantiate"),
    Mistake("activation used as the output layer", task="ch07.model",
            edits=[("return self.sigmoid(self.linear3(x))", "return self.activation(self.linear3(x))")],
            message="the last step must be the sigmoid"),
    Mistake("fixed input width", task="ch07.model",
            edits=[("        self.linear1 = nn.Linear(n_features, 6)\n", "        self.linear1 = nn.Linear(8, 6)\n")],
            message="use n_features"),
    Mistake("no zero_grad in the training loop", task="ch07.train",
            edits=[("        optimizer.zero_grad()\n", "")],
            message="call optimizer.zero_grad() every epoch"),
    Mistake("summed BCE", task="ch07.train",
            edits=[("criterion = nn.BCELoss()", 'criterion = nn.BCELoss(reduction="sum")')],
            message="use the mean"),
    Mistake("accuracy computed with gradient tracking", task="ch07.accuracy",
            edits=[("    with torch.no_grad():\n        predicted = (model(x) >= 0.5).float()\n"
                    "        return (predicted == y).float().mean().item()",
                    "    predicted = (model(x) >= 0.5).float()\n"
                    "    return (predicted == y).float().mean().item()")],
            message="torch.no_grad()"),
    Mistake("predictions flattened against [N, 1] labels", task="ch07.accuracy",
            edits=[("predicted = (model(x) >= 0.5).float()\n", "predicted = (model(x) >= 0.5).float().flatten()\n")],
            message="broadcasts"),
    Mistake("wrong default activation", task="ch07.model",
            edits=[("activation: type[nn.Module] = nn.Sigmoid", "activation: type[nn.Module] = nn.ReLU")],
            message="default activation"),
    Mistake("lr argument ignored (SGD with a fixed lr)", task="ch07.train",
            edits=[("optimizer = torch.optim.SGD(model.parameters(), lr=lr)",
                    "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)")],
            message="the lr argument is ignored"),
    Mistake("wrong default lr", task="ch07.train",
            edits=[("lr: float = 0.1) -> list[float]:", "lr: float = 0.01) -> list[float]:")],
            message="default lr"),
    Mistake("BCEWithLogitsLoss on probabilities", task="ch07.train",
            edits=[("criterion = nn.BCELoss()", "criterion = nn.BCEWithLogitsLoss()")],
            message="BCEWithLogitsLoss"),
    Mistake("loss recorded after the update", task="ch07.train",
            edits=[("        optimizer.step()\n        losses.append(loss.item())\n",
                    "        optimizer.step()\n        losses.append(criterion(model(x), y).item())\n")],
            message="after optimizer.step()"),
    Mistake("> 0.5 instead of >= 0.5", task="ch07.accuracy",
            edits=[("predicted = (model(x) >= 0.5).float()\n", "predicted = (model(x) > 0.5).float()\n")],
            message="exactly 0.5"),
    Mistake("torch.round for the predictions", task="ch07.accuracy",
            edits=[("predicted = (model(x) >= 0.5).float()\n", "predicted = torch.round(model(x))\n")],
            message="exactly 0.5"),
    # Hidden only: the public example's answer returned literally, the rule still wrong (> 0.5);
    # the hidden tests' held-out probabilities of exactly 0.5 catch it.
    Mistake("hard-codes the public answers", task="ch07.accuracy", public=False,
            edits=[("        predicted = (model(x) >= 0.5).float()\n",
                    "        predicted = (model(x) > 0.5).float()\n"
                    "        if len(y) == 10:\n"
                    "            return 0.8\n")],
            message="exactly 0.5"),
]

VARIANTS = [
    Variant("layers registered in another order", edits=[
        ("        self.linear1 = nn.Linear(n_features, 6)\n        self.linear2 = nn.Linear(6, 4)\n"
         "        self.linear3 = nn.Linear(4, 1)\n        self.activation = activation()\n"
         "        self.sigmoid = nn.Sigmoid()\n",
         "        self.sigmoid = nn.Sigmoid()\n        self.activation = activation()\n"
         "        self.linear3 = nn.Linear(4, 1)\n        self.linear2 = nn.Linear(6, 4)\n"
         "        self.linear1 = nn.Linear(n_features, 6)\n"),
    ]),
    Variant("nn.Sequential", edits=[
        ("        self.linear1 = nn.Linear(n_features, 6)\n        self.linear2 = nn.Linear(6, 4)\n"
         "        self.linear3 = nn.Linear(4, 1)\n        self.activation = activation()\n"
         "        self.sigmoid = nn.Sigmoid()\n",
         "        self.net = nn.Sequential(nn.Linear(n_features, 6), activation(), nn.Linear(6, 4), activation(),\n"
         "                                 nn.Linear(4, 1), nn.Sigmoid())\n"),
        ("        x = self.activation(self.linear1(x))\n        x = self.activation(self.linear2(x))\n"
         "        return self.sigmoid(self.linear3(x))\n",
         "        return self.net(x)\n"),
    ]),
    Variant("functional sigmoid, F.binary_cross_entropy, another accuracy idiom", edits=[
        ("        self.sigmoid = nn.Sigmoid()\n", ""),
        ("        return self.sigmoid(self.linear3(x))\n", "        return torch.sigmoid(self.linear3(x))\n"),
        ("    criterion = nn.BCELoss()\n", ""),
        ("optimizer = torch.optim.SGD(model.parameters(), lr=lr)", "optimizer = torch.optim.SGD(model.parameters(), lr)"),
        ("        loss = criterion(model(x), y)\n",
         "        loss = torch.nn.functional.binary_cross_entropy(model(x), y)\n"),
        ("        predicted = (model(x) >= 0.5).float()\n        return (predicted == y).float().mean().item()\n",
         "        predicted = model(x).ge(0.5)\n        return (predicted == y.bool()).sum().item() / len(y)\n"),
    ]),
    Variant("zero_grad first, float(loss); eval mode and inference_mode in accuracy", edits=[
        ("        loss = criterion(model(x), y)\n        optimizer.zero_grad()\n        loss.backward()\n"
         "        optimizer.step()\n        losses.append(loss.item())\n",
         "        optimizer.zero_grad(set_to_none=True)\n        output = model(x)\n"
         "        loss = criterion(output, y)\n        loss.backward()\n        optimizer.step()\n"
         "        losses.append(float(loss))\n"),
        ("    with torch.no_grad():\n        predicted = (model(x) >= 0.5).float()\n",
         "    model.eval()\n    with torch.inference_mode():\n        predicted = (model(x) >= 0.5).float()\n"),
    ]),
]

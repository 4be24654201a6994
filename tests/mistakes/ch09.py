"""Realistic chapter 09 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("softmax without subtracting the row max", task="ch09.softmax",
            edits=[("    shifted = z - z.max(dim=1, keepdim=True).values\n    exp = torch.exp(shifted)\n",
                    "    exp = torch.exp(z)\n")],
            message="subtract each row's max before exp"),
    Mistake("softmax normalised over the columns", task="ch09.softmax",
            edits=[("return exp / exp.sum(dim=1, keepdim=True)", "return exp / exp.sum(dim=0, keepdim=True)")],
            message="normalise each row, over dim=1"),
    Mistake("cross-entropy applies softmax before the loss", task="ch09.cross_entropy",
            edits=[("    shifted = logits - logits.max(dim=1, keepdim=True).values\n",
                    "    logits = torch.softmax(logits, dim=1)\n"
                    "    shifted = logits - logits.max(dim=1, keepdim=True).values\n")],
            message="softmax is applied before the cross-entropy"),
    Mistake("cross-entropy summed over the batch", task="ch09.cross_entropy",
            edits=[("return -(one_hot * log_probs).sum(dim=1).mean()", "return -(one_hot * log_probs).sum()")],
            message="take the mean"),
    Mistake("cross-entropy without the log", task="ch09.cross_entropy",
            edits=[("return -(one_hot * log_probs).sum(dim=1).mean()",
                    "return -(one_hot * log_probs.exp()).sum(dim=1).mean()")],
            message="the log is missing"),
    Mistake("cross-entropy as the log of an unshifted softmax", task="ch09.cross_entropy",
            edits=[("    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))\n",
                    "    log_probs = torch.log(torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True))\n")],
            message="log(softmax) underflows"),
    Mistake("mean and std swapped in Normalize", task="ch09.transform",
            edits=[("transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))", "transforms.Normalize((MNIST_STD,), (MNIST_MEAN,))")],
            message="mean and std are swapped"),
    Mistake("Normalize left out", task="ch09.transform",
            edits=[("transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])",
                    "transforms.Compose([transforms.ToTensor()])")],
            message="Normalize((0.1307,), (0.3081,)) is missing"),
    Mistake("Normalize before ToTensor", task="ch09.transform",
            edits=[("transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])",
                    "transforms.Compose([transforms.Normalize((MNIST_MEAN,), (MNIST_STD,)), transforms.ToTensor()])")],
            message="ToTensor() must come first"),
    Mistake("softmax at the end of the model", task="ch09.model",
            edits=[("        return self.l5(x)\n", "        return F.softmax(self.l5(x), dim=1)\n")],
            message="forward applies softmax"),
    Mistake("ReLU after the last layer", task="ch09.model",
            edits=[("        return self.l5(x)\n", "        return F.relu(self.l5(x))\n")],
            message="ReLU after the last layer"),
    Mistake("no zero_grad in train_epoch", task="ch09.train",
            edits=[("        optimizer.zero_grad()\n        loss = criterion(model(inputs), targets)\n",
                    "        loss = criterion(model(inputs), targets)\n")],
            message="call optimizer.zero_grad() for every batch"),
    Mistake("evaluate returns a percentage", task="ch09.train",
            edits=[("            total += targets.shape[0]\n    return correct / total\n",
                    "            total += targets.shape[0]\n    return 100 * correct / total\n")],
            message="not a percentage"),
    Mistake("evaluate without no_grad", task="ch09.train",
            edits=[("    with torch.no_grad():\n        for inputs, targets in loader:\n"
                    "            predicted = model(inputs).argmax(dim=1)\n",
                    "    if True:\n        for inputs, targets in loader:\n"
                    "            predicted = model(inputs).argmax(dim=1)\n")],
            message="torch.no_grad()"),
    Mistake("train_epoch keeps evaluation mode", task="ch09.train",
            edits=[("    model.train()\n", "")],
            message="call model.train()"),
    Mistake("softmax with torch.softmax instead of by hand", task="ch09.softmax",
            edits=[("    shifted = z - z.max(dim=1, keepdim=True).values\n    exp = torch.exp(shifted)\n"
                    "    return exp / exp.sum(dim=1, keepdim=True)\n",
                    "    return torch.softmax(z, dim=1)\n")],
            message="by hand"),
    Mistake("softmax with nn.Softmax instead of by hand", task="ch09.softmax",
            edits=[("    shifted = z - z.max(dim=1, keepdim=True).values\n    exp = torch.exp(shifted)\n"
                    "    return exp / exp.sum(dim=1, keepdim=True)\n",
                    "    return nn.Softmax(dim=1)(z)\n")],
            message="by hand"),
    Mistake("cross-entropy with F.cross_entropy instead of by hand", task="ch09.cross_entropy",
            edits=[("    return -(one_hot * log_probs).sum(dim=1).mean()\n",
                    "    return F.cross_entropy(logits, targets)\n")],
            message="by hand"),
    Mistake("cross-entropy with log_softmax instead of by hand", task="ch09.cross_entropy",
            edits=[("    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))\n",
                    "    log_probs = torch.log_softmax(logits, dim=1)\n")],
            message="by hand"),
    Mistake("one_hot without num_classes", task="ch09.cross_entropy",
            edits=[("F.one_hot(targets, num_classes=logits.shape[1])", "F.one_hot(targets)")],
            message="num_classes"),
    Mistake("softmax before CrossEntropyLoss in the training loop", task="ch09.train",
            edits=[("        loss = criterion(model(inputs), targets)\n",
                    "        loss = criterion(F.softmax(model(inputs), dim=1), targets)\n")],
            message="softmax is applied before the loss"),
    Mistake("evaluate divides by len(loader) * batch_size", task="ch09.train",
            edits=[("            total += targets.shape[0]\n    return correct / total\n",
                    "            total += targets.shape[0]\n    return correct / (len(loader) * loader.batch_size)\n")],
            message="the last batch is smaller"),
    # Hidden only: the public example's answer (0.35 for 20 samples) returned literally, the
    # division still wrong; the hidden tests' held-out loader catches it.
    Mistake("hard-codes the public answers", task="ch09.train", public=False,
            edits=[("            total += targets.shape[0]\n    return correct / total\n",
                    "            total += targets.shape[0]\n    if total == 20:\n        return 0.35\n"
                    "    return correct / (len(loader) * loader.batch_size)\n")],
            message="the last batch is smaller"),
]

_LAYERS = ("        self.l1 = nn.Linear(784, 512)\n        self.l2 = nn.Linear(512, 256)\n"
           "        self.l3 = nn.Linear(256, 128)\n        self.l4 = nn.Linear(128, 64)\n"
           "        self.l5 = nn.Linear(64, 10)\n")
_FORWARD = ("        x = x.view(-1, 784)\n        x = F.relu(self.l1(x))\n        x = F.relu(self.l2(x))\n"
            "        x = F.relu(self.l3(x))\n        x = F.relu(self.l4(x))\n        return self.l5(x)\n")

VARIANTS = [
    Variant("layers registered in another order", edits=[
        (_LAYERS, "        self.l5 = nn.Linear(64, 10)\n        self.l3 = nn.Linear(256, 128)\n"
                  "        self.l1 = nn.Linear(784, 512)\n        self.l4 = nn.Linear(128, 64)\n"
                  "        self.l2 = nn.Linear(512, 256)\n"),
    ]),
    Variant("nn.Sequential with nn.Flatten and nn.ReLU", edits=[
        (_LAYERS, "        self.net = nn.Sequential(\n            nn.Flatten(),\n"
                  "            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),\n"
                  "            nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),\n"
                  "            nn.Linear(64, 10))\n"),
        (_FORWARD, "        return self.net(x)\n"),
    ]),
    Variant("amax, logsumexp, gather, torch.relu and another accuracy idiom", edits=[
        ("    shifted = z - z.max(dim=1, keepdim=True).values\n    exp = torch.exp(shifted)\n"
         "    return exp / exp.sum(dim=1, keepdim=True)\n",
         "    e = (z - z.amax(dim=-1, keepdim=True)).exp()\n    return e / e.sum(-1, keepdim=True)\n"),
        ("    shifted = logits - logits.max(dim=1, keepdim=True).values\n"
         "    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))\n"
         "    one_hot = F.one_hot(targets, num_classes=logits.shape[1]).to(logits.dtype)\n"
         "    return -(one_hot * log_probs).sum(dim=1).mean()\n",
         "    log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)\n"
         "    return -log_probs.gather(1, targets.unsqueeze(1)).mean()\n"),
        (_FORWARD, "        x = x.flatten(1)\n        for layer in (self.l1, self.l2, self.l3, self.l4):\n"
                   "            x = torch.relu(layer(x))\n        return self.l5(x)\n"),
        ("            predicted = model(inputs).argmax(dim=1)\n"
         "            correct += (predicted == targets).sum().item()\n"
         "            total += targets.shape[0]\n",
         "            predicted = model(inputs).argmax(dim=1)\n"
         "            correct += (predicted == targets).float().sum().item()\n"
         "            total += len(targets)\n"),
    ]),
    Variant("device moves and indexing the picked log-probabilities", edits=[
        ("    one_hot = F.one_hot(targets, num_classes=logits.shape[1]).to(logits.dtype)\n"
         "    return -(one_hot * log_probs).sum(dim=1).mean()\n",
         "    return -log_probs[torch.arange(len(targets)), targets].mean()\n"),
        ("    model.train()\n    total, batches = 0.0, 0\n    for inputs, targets in loader:\n",
         "    device = next(model.parameters()).device\n    if torch.cuda.is_available():\n"
         "        torch.cuda.synchronize()\n    model.train()\n    total, batches = 0.0, 0\n"
         "    for inputs, targets in loader:\n        inputs, targets = inputs.to(device), targets.to(device)\n"),
        ("    model.eval()\n    correct, total = 0, 0\n",
         "    model.eval()\n    device = next(model.parameters()).device\n    correct, total = 0, 0\n"),
        ("            predicted = model(inputs).argmax(dim=1)\n",
         "            predicted = model(inputs.to(device)).argmax(dim=1).cpu()\n"),
    ]),
]

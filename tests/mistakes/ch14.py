"""Realistic chapter 14 mistakes, as small edits of the solution."""
from grader.mistakes import Mistake, Variant

MISTAKES = [
    Mistake("softmax at the end of LeNet", task="ch14.model",
            edits=[("        return self.fc3(x)\n", "        return torch.softmax(self.fc3(x), dim=1)\n")],
            message="returns probabilities"),
    Mistake("fc1 sized for the wrong image size", task="ch14.model",
            edits=[("self.fc1 = nn.Linear(16 * 5 * 5, 120)", "self.fc1 = nn.Linear(16 * 4 * 4, 120)")],
            message="expected 400 = 16 channels x 5 x 5"),
    Mistake("no ReLU after the convolutions", task="ch14.model",
            edits=[("x = self.pool(torch.relu(self.conv1(x)))", "x = self.pool(self.conv1(x))"),
                   ("x = self.pool(torch.relu(self.conv2(x)))", "x = self.pool(self.conv2(x))")],
            message="ReLU after conv1/conv2 is missing"),
    Mistake("no zero_grad in train_epoch", task="ch14.model",
            edits=[("        optimizer.zero_grad()\n        loss = criterion", "        loss = criterion")],
            message="call optimizer.zero_grad()"),
    Mistake("labels left behind when moving the batch", task="ch14.model",
            edits=[("images, labels = images.to(device), labels.to(device)\n        optimizer",
                    "images = images.to(device)\n        optimizer")],
            message="move the labels too"),
    Mistake("the whole model pickled into the checkpoint", task="ch14.checkpoint",
            edits=[('torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), '
                    '"epoch": int(epoch)},',
                    'torch.save({"model": model, "optimizer": optimizer, "epoch": int(epoch)},'),
                   ("map_location=map_location, weights_only=True)",
                    "map_location=map_location, weights_only=False)"),
                   ('model.load_state_dict(checkpoint["model"])',
                    'model.load_state_dict(checkpoint["model"].state_dict())'),
                   ('optimizer.load_state_dict(checkpoint["optimizer"])',
                    'optimizer.load_state_dict(checkpoint["optimizer"].state_dict())')],
            message="cannot be loaded with weights_only=True"),
    Mistake("optimizer state not restored", task="ch14.checkpoint",
            edits=[('    if optimizer is not None:\n'
                    '        optimizer.load_state_dict(checkpoint["optimizer"])\n', "")],
            message="Adam's state"),
    Mistake("map_location ignored", task="ch14.checkpoint",
            edits=[("torch.load(path, map_location=map_location, weights_only=True)",
                    "torch.load(path, weights_only=True)")],
            message="map_location was ignored"),
    Mistake("hook binds the loop variable late", task="ch14.hooks",
            edits=[("def hook(module, inputs, output, name=name):", "def hook(module, inputs, output):")],
            message="late binding"),
    Mistake("hooks never removed", task="ch14.hooks",
            edits=[("        for handle in handles:\n            handle.remove()\n", "        pass\n")],
            message="handle.remove()"),
    Mistake("hooks removed only when forward succeeds", task="ch14.hooks",
            edits=[("    handles = []\n    try:\n        for name in layer_names:",
                    "    handles = []\n    if True:\n        for name in layer_names:"),
                   ("        model(x)\n    finally:\n        for handle in handles:",
                    "        model(x)\n    if True:\n        for handle in handles:")],
            message="try/finally"),
    Mistake("predict forgets model.eval()", task="ch14.predict",
            edits=[("    was_training = model.training\n    model.eval()\n",
                    "    was_training = model.training\n")],
            message="model.eval()"),
    Mistake("predict leaves the model in eval mode", task="ch14.predict",
            edits=[("        model.train(was_training)\n    return scores",
                    "        pass\n    return scores")],
            message="restore the previous mode"),
    Mistake("predict tracks gradients", task="ch14.predict",
            edits=[("        with torch.no_grad():\n            scores = model(x)\n",
                    "        scores = model(x)\n")],
            message="torch.no_grad()"),
    Mistake("hard-codes the public answers", task="ch14.predict",
            edits=[("    was_training = model.training\n    model.eval()\n",
                    "    if tuple(x.shape) == (20, 6):\n"
                    "        return torch.tensor([0, 3, 0, 2, 0, 0, 1, 2, 0, 2, 2, 1, 0, 1, 0, 2, 2, 2, 1, 2])\n"
                    "    was_training = model.training\n")],
            message="model.eval()", public=False),  # passes every public test by construction; held-out inputs catch it
]

LAYERS = """        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
"""
FORWARD = """        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
"""

VARIANTS = [
    Variant("LeNet as two nn.Sequential blocks", edits=[
        (LAYERS, """        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
"""),
        (FORWARD, "        return self.classifier(self.features(x).flatten(1))\n"),
    ]),
    Variant("layers registered backwards, functional calls, model.to(device), list of losses", edits=[
        ("from torch import nn\n", "from torch import nn\nimport torch.nn.functional as F\n"),
        (LAYERS, """        self.fc3 = nn.Linear(84, 10)
        self.fc2 = nn.Linear(120, 84)
        self.fc1 = nn.Linear(400, 120)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
"""),
        (FORWARD, """        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), kernel_size=2, stride=2)
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
"""),
        ("""    model.train()
    total, batches = 0.0, 0
    for images, labels in loader:
        if device is not None:
            images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    return total / max(batches, 1)
""", """    if device is not None:
        model.to(device)
    model.train()
    losses = []
    for images, labels in loader:
        if device:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses) if losses else 0.0
"""),
    ]),
    Variant("inference_mode and max idiom, hook factory, dict() checkpoint", edits=[
        ("""        with torch.no_grad():
            scores = model(x)
    finally:
        model.train(was_training)
    return scores.argmax(dim=1)
""", """        with torch.inference_mode():
            _, predicted = torch.max(model(x), 1)
    finally:
        if was_training:
            model.train()
    return predicted
"""),
        ("""    handles = []
    try:
        for name in layer_names:
            def hook(module, inputs, output, name=name):
                activations[name] = output.detach()
            handles.append(modules[name].register_forward_hook(hook))
        model(x)
    finally:
        for handle in handles:
            handle.remove()
""", """    def make_hook(key):
        def hook(module, inputs, output):
            activations[key] = output.detach()
        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in layer_names]
    try:
        model(x)
    finally:
        while handles:
            handles.pop().remove()
"""),
        ('torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": int(epoch)},\n'
         '               path)',
         'state = dict(epoch=int(epoch), optimizer=optimizer.state_dict(), model=model.state_dict())\n'
         '    torch.save(state, path)'),
        ("""    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    return int(checkpoint["epoch"])
""", """    checkpoint = torch.load(path, weights_only=True, map_location=map_location)
    model.load_state_dict(checkpoint.get("model"))
    if optimizer:
        optimizer.load_state_dict(checkpoint.get("optimizer"))
    return checkpoint.get("epoch", 0)
"""),
    ]),
]
